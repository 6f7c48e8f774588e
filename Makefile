# The two commands of the README; everything else is in scripts/.
.PHONY: all build demo test bench clean
all: build
build:
	scripts/build.sh release
demo:
	scripts/demo.sh
test:
	scripts/test.sh
bench:
	bench/core.sh
clean:
	rm -rf build build-asan build.configure.log build-asan.configure.log
