#!/usr/bin/env bash
# Install (or uninstall) evgw as a systemd service.
#
#   scripts/install.sh [--root DIR] [--source DIR|WHEEL] [--python PY] [--no-start]
#   scripts/install.sh --uninstall [--root DIR]
#
# Installs: /opt/evgw/venv (evgw and its dependencies), /opt/evgw/docs, the service user
# `evgw` (sysusers.d, member of dialout), /etc/evgw/evgw.toml and secrets.toml from the
# examples when absent, a gateway signing key in /var/lib/evgw when absent, the unit
# /etc/systemd/system/evgw.service, and enables it (and starts it unless --no-start).
# --root DIR installs into a staging root (an image being built, or a test): nothing is
# started, and users and unit links are created inside DIR.
# --uninstall removes the program, the unit and the user snippets, and keeps /etc/evgw and
# /var/lib/evgw (configuration, ledger and key).
set -euo pipefail

ROOT=/
SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON=python3
START=1
UNINSTALL=0

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "install.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
    --source) SOURCE="${2:?--source needs a directory or wheel}"; shift 2 ;;
    --python) PYTHON="${2:?--python needs an interpreter}"; shift 2 ;;
    --no-start) START=0; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done

ROOT="$(mkdir -p "$ROOT" && cd "$ROOT" && pwd)"
R="${ROOT%/}"                      # prefix for paths; empty for the real root
LIVE=0; [ "$ROOT" = / ] && LIVE=1
[ "$(id -u)" = 0 ] || [ "$LIVE" = 0 ] || die "run as root to install on this machine (or use --root DIR)"

OPT="$R/opt/evgw"
UNIT="$R/etc/systemd/system/evgw.service"
SYSUSERS="$R/usr/lib/sysusers.d/evgw.conf"
TMPFILES="$R/usr/lib/tmpfiles.d/evgw.conf"

systemctl_root() {
  if [ "$LIVE" = 1 ]; then systemctl "$@"; else systemctl --root="$ROOT" "$@"; fi
}

if [ "$UNINSTALL" = 1 ]; then
  if [ "$LIVE" = 1 ]; then systemctl disable --now evgw.service 2>/dev/null || true
  else systemctl_root disable evgw.service >/dev/null 2>&1 || true; fi
  rm -f "$UNIT" "$SYSUSERS" "$TMPFILES"
  rm -rf "$OPT"
  [ "$LIVE" = 1 ] && systemctl daemon-reload
  echo "evgw uninstalled; kept $R/etc/evgw (configuration) and $R/var/lib/evgw (ledger, key)"
  exit 0
fi

command -v "$PYTHON" >/dev/null || die "$PYTHON not found: install Python >= 3.11"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "$PYTHON is older than 3.11"
[ -e "$SOURCE" ] || die "source $SOURCE does not exist"
SRC_DIR="$SOURCE"; [ -d "$SOURCE" ] || SRC_DIR="$(dirname "${BASH_SOURCE[0]}")/.."

echo "installing evgw from $SOURCE into ${ROOT}"
mkdir -p "$OPT" "$R/etc/systemd/system" "$R/usr/lib/sysusers.d" "$R/usr/lib/tmpfiles.d" \
         "$R/etc/evgw" "$R/var/lib/evgw"
if [ ! -x "$OPT/venv/bin/python" ]; then
  "$PYTHON" -m venv "$OPT/venv"
fi
"$OPT/venv/bin/pip" install --quiet --disable-pip-version-check "$SOURCE"
mkdir -p "$OPT/docs" && cp "$SRC_DIR"/docs/*.md "$OPT/docs/" 2>/dev/null || true

install -m 644 "$SRC_DIR/systemd/evgw.sysusers" "$SYSUSERS"
install -m 644 "$SRC_DIR/systemd/evgw.tmpfiles" "$TMPFILES"
install -m 644 "$SRC_DIR/systemd/evgw.service" "$UNIT"
if [ "$LIVE" = 1 ]; then systemd-sysusers "$SYSUSERS"; else systemd-sysusers --root="$ROOT" "$SYSUSERS"; fi
uid_of() { awk -F: -v u="$1" '$1 == u { print $3 }' "$R/etc/passwd"; }
gid_of() { awk -F: -v g="$1" '$1 == g { print $3 }' "$R/etc/group"; }
EVGW_UID="$(uid_of evgw)"; EVGW_GID="$(gid_of evgw)"
[ -n "$EVGW_UID" ] || die "the evgw user was not created in $R/etc/passwd"

chown 0:"$EVGW_GID" "$R/etc/evgw" && chmod 750 "$R/etc/evgw"
chown "$EVGW_UID:$EVGW_GID" "$R/var/lib/evgw" && chmod 700 "$R/var/lib/evgw"
if [ ! -e "$R/etc/evgw/evgw.toml" ]; then
  "$OPT/venv/bin/evgw" config example > "$R/etc/evgw/evgw.toml"
  chown 0:"$EVGW_GID" "$R/etc/evgw/evgw.toml"; chmod 640 "$R/etc/evgw/evgw.toml"
  echo "wrote $R/etc/evgw/evgw.toml from the example: edit it, then run evgw config check"
fi
if [ ! -e "$R/etc/evgw/secrets.toml" ]; then
  "$OPT/venv/bin/evgw" config example --secrets > "$R/etc/evgw/secrets.toml"
  chown "$EVGW_UID:$EVGW_GID" "$R/etc/evgw/secrets.toml"; chmod 600 "$R/etc/evgw/secrets.toml"
fi
if [ ! -e "$R/var/lib/evgw/gateway.key" ]; then
  "$OPT/venv/bin/evgw" keys generate --key "$R/var/lib/evgw/gateway.key" >/dev/null
  chown "$EVGW_UID:$EVGW_GID" "$R/var/lib/evgw/gateway.key"; chmod 600 "$R/var/lib/evgw/gateway.key"
  echo "generated the gateway key $R/var/lib/evgw/gateway.key (evgw keys show prints its public key)"
fi

if [ "$LIVE" = 1 ]; then
  systemd-tmpfiles --create "$TMPFILES" || true
  systemctl daemon-reload
  if [ "$START" = 1 ]; then systemctl enable --now evgw.service; else systemctl enable evgw.service; fi
else
  systemctl_root enable evgw.service >/dev/null
fi
echo "evgw installed: $OPT/venv/bin/evgw, unit $UNIT (enabled)"
