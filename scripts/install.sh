#!/usr/bin/env bash
# install.sh [--uninstall] — `make install` / `make uninstall`: nightshift as a system service.
#
# Installs (paths under $DESTDIR; each variable may be set in the environment or on make's
# command line):
#   $BINDIR/nightshift                        the program (from $BIN, default build/nightshift)
#   $MANDIR/man1/nightshift.1                 the man page (docs/nightshift.1)
#   $SYSCONFDIR/nightshift/nightshift.ini     the config, only when absent: never overwritten
#   $SYSCONFDIR/nightshift/nightshift.ini.default   the pristine config of this release, always
#   $UNITDIR/nightshift.service               the server (User=nightshift, StateDirectory=)
#   $UNITDIR/nightshift-nightly.{service,timer}  example: a nightly `nightshift submit`
#   $SYSUSERSDIR/nightshift.conf              the user nightshift, for systemd-sysusers
# Defaults: PREFIX=/usr/local, BINDIR=$PREFIX/bin, MANDIR=$PREFIX/share/man, SYSCONFDIR=/etc
# (for any PREFIX: the unit and the man page say /etc/nightshift), UNITDIR=$PREFIX/lib/systemd/system,
# SYSUSERSDIR=$PREFIX/lib/sysusers.d.
#
# --uninstall removes what install puts there except nightshift.ini (the operator's) and the
# data dir; it does not stop the service.
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
BINDIR=${BINDIR:-$PREFIX/bin}
MANDIR=${MANDIR:-$PREFIX/share/man}
SYSCONFDIR=${SYSCONFDIR:-/etc}
UNITDIR=${UNITDIR:-$PREFIX/lib/systemd/system}
SYSUSERSDIR=${SYSUSERSDIR:-$PREFIX/lib/sysusers.d}
BIN=${BIN:-build/nightshift}

say() { printf 'install: %s\n' "$*" >&2; }

# a file of dist/ with @BINDIR@ and @SYSCONFDIR@ replaced, installed at $2 with mode $3
install_subst() {
    local tmp
    tmp=$(mktemp)
    sed -e "s|@BINDIR@|$BINDIR|g" -e "s|@SYSCONFDIR@|$SYSCONFDIR|g" "$1" >"$tmp"
    install -D -m "$3" "$tmp" "$2"
    rm -f "$tmp"
}

conf="$DESTDIR$SYSCONFDIR/nightshift"
units=(nightshift.service nightshift-nightly.service nightshift-nightly.timer)

if [ "${1:-}" = "--uninstall" ]; then
    rm -f "$DESTDIR$BINDIR/nightshift" "$DESTDIR$MANDIR/man1/nightshift.1" "$conf/nightshift.ini.default" \
        "$DESTDIR$SYSUSERSDIR/nightshift.conf"
    for u in "${units[@]}"; do rm -f "$DESTDIR$UNITDIR/$u"; done
    say "removed nightshift; kept $conf/nightshift.ini and the data dir"
    exit 0
fi
[ $# -eq 0 ] || { say "unknown argument '$1' (only --uninstall)"; exit 2; }
[ -x "$BIN" ] || { say "no program at '$BIN': build it first (make build), or set BIN"; exit 1; }

install -D -m 0755 "$BIN" "$DESTDIR$BINDIR/nightshift"
install -D -m 0644 docs/nightshift.1 "$DESTDIR$MANDIR/man1/nightshift.1"
install -D -m 0644 dist/nightshift.ini "$conf/nightshift.ini.default"
if [ -e "$conf/nightshift.ini" ]; then
    say "kept $conf/nightshift.ini (this release's defaults: nightshift.ini.default)"
else
    install -D -m 0644 dist/nightshift.ini "$conf/nightshift.ini"
fi
install_subst dist/systemd/nightshift.service.in "$DESTDIR$UNITDIR/nightshift.service" 0644
install_subst dist/systemd/nightshift-nightly.service.in "$DESTDIR$UNITDIR/nightshift-nightly.service" 0644
install -D -m 0644 dist/systemd/nightshift-nightly.timer "$DESTDIR$UNITDIR/nightshift-nightly.timer"
install -D -m 0644 dist/systemd/nightshift.sysusers "$DESTDIR$SYSUSERSDIR/nightshift.conf"
say "installed nightshift (prefix $PREFIX${DESTDIR:+, under $DESTDIR})"
if [ -z "$DESTDIR" ]; then
    say "next: systemd-sysusers; systemctl daemon-reload; edit $SYSCONFDIR/nightshift/nightshift.ini;"
    say "      nightshift doctor --data-dir /var/lib/nightshift; systemctl enable --now nightshift"
fi
