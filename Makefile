# The two commands of the README; everything else is in scripts/.
# make install [PREFIX=/usr/local] [DESTDIR=] [SYSCONFDIR=/etc] ...: see scripts/install.sh
.PHONY: all build demo test bench clean install uninstall
all: build
build:
	scripts/build.sh release
demo:
	scripts/demo.sh
test:
	scripts/test.sh
bench:
	bench/run
# installs the program built by `make build` (BIN=... another one); never builds it itself
export PREFIX DESTDIR BINDIR MANDIR SYSCONFDIR UNITDIR SYSUSERSDIR BIN
install:
	scripts/install.sh
uninstall:
	scripts/install.sh --uninstall
clean:
	rm -rf build build-asan build-vulkan build-cuda build*.configure.log build*.build.log
