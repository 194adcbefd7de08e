#!/usr/bin/env bash
# Installs scalper on this host: the release binary, a config (never overwriting an existing
# one), the systemd unit, and a dedicated system user with its data directory.
#
#   sudo scripts/install.sh            # after `make build`
#   PREFIX=/opt/scalper scripts/install.sh
#
# Set DESTDIR to stage into a directory instead of the live system (no user is created and
# systemd is not touched then); BIN names another binary to install. The installed binary has
# its debug info stripped (symbols stay, so a panic's backtrace still names functions);
# target/release/scalper keeps its line tables for profiling.
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
BIN=${BIN:-target/release/scalper}
[ -x "$BIN" ] || { echo "install: $BIN not built; run 'make build' first" >&2; exit 1; }
command -v strip >/dev/null \
  || { echo "install: 'strip' is missing; install the Debian package binutils" >&2; exit 1; }

install -d "$DESTDIR$PREFIX/bin" "$DESTDIR/etc/scalper" "$DESTDIR/etc/systemd/system" \
  "$DESTDIR$PREFIX/share/doc/scalper"
install -m 0755 "$BIN" "$DESTDIR$PREFIX/bin/scalper"
strip --strip-debug "$DESTDIR$PREFIX/bin/scalper"
install -m 0644 README.md "$DESTDIR$PREFIX/share/doc/scalper/README.md"
install -m 0644 config/production.example.toml "$DESTDIR/etc/scalper/scalper.example.toml"
if [ ! -e "$DESTDIR/etc/scalper/scalper.toml" ]; then
  install -m 0640 config/production.example.toml "$DESTDIR/etc/scalper/scalper.toml"
  echo "install: wrote $DESTDIR/etc/scalper/scalper.toml from the example; edit it before starting"
fi
if [ ! -e "$DESTDIR/etc/scalper/secrets.env" ]; then
  umask 077
  printf '%s\n' '# DHAN_CLIENT_ID=' '# DHAN_ACCESS_TOKEN=' '# SCALPER_CONTROL_TOKEN=' '# PGPASSWORD=' \
    '# REDIS_PASSWORD=' \
    '# Alert targets ([[alerts.targets]]): SCALPER_ALERT_<NAME>_URL for webhook and slack,' \
    '# SCALPER_ALERT_<NAME>_BOT_TOKEN for telegram; <NAME> is the target name in capitals.' \
    '# SCALPER_ALERT_ONCALL_URL=' > "$DESTDIR/etc/scalper/secrets.env"
  chmod 0600 "$DESTDIR/etc/scalper/secrets.env"
  echo "install: wrote $DESTDIR/etc/scalper/secrets.env (mode 0600); fill in the secrets"
fi
sed "s#/usr/local/bin/scalper#$PREFIX/bin/scalper#" config/scalper.service \
  > "$DESTDIR/etc/systemd/system/scalper.service"
chmod 0644 "$DESTDIR/etc/systemd/system/scalper.service"

if [ -z "$DESTDIR" ]; then
  if ! id scalper >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/scalper --shell /usr/sbin/nologin scalper
  fi
  install -d -o scalper -g scalper -m 0700 /var/lib/scalper
  chgrp scalper /etc/scalper/scalper.toml
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    echo "install: done; start with 'systemctl enable --now scalper'"
  else
    echo "install: done (systemd is not running here; the unit is in /etc/systemd/system)"
  fi
else
  echo "install: staged into $DESTDIR (no user created, systemd not reloaded)"
fi
