#!/usr/bin/env bash
# Install (or uninstall) evgw as a systemd service.
#
#   scripts/install.sh [--root DIR] [--source DIR|WHEEL] [--python PY] [--release-key PEM]
#                      [--no-start]
#   scripts/install.sh --uninstall [--root DIR]
#
# Installs: /opt/evgw/releases/VERSION (evgw and its dependencies), the link
# /opt/evgw/current to it, /usr/local/bin/evgw (on the PATH) through that link, /opt/evgw/docs,
# the service user `evgw` (sysusers.d, member of dialout), /etc/evgw/evgw.toml and
# secrets.toml from the examples when absent, the release key that signs updates
# (--release-key, to /etc/evgw/release.pub), a gateway signing key in /var/lib/evgw when
# absent, the unit /etc/systemd/system/evgw.service, and enables it (and starts it unless
# --no-start), with evgw-update.path/.service (the root updater of MQTT-fetched releases).
# Later versions come as signed updates: evgw update apply ARTEFACT.
# --root DIR installs into a staging root (an image being built, or a test): nothing is
# started, and users and unit links are created inside DIR.
# --uninstall removes the program, the unit and the user snippets, and keeps /etc/evgw and
# /var/lib/evgw (configuration, ledger and key).
set -euo pipefail

ROOT=/
SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON=python3
RELEASE_KEY=
START=1
UNINSTALL=0

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "install.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
    --source) SOURCE="${2:?--source needs a directory or wheel}"; shift 2 ;;
    --python) PYTHON="${2:?--python needs an interpreter}"; shift 2 ;;
    --release-key) RELEASE_KEY="${2:?--release-key needs a PEM file}"; shift 2 ;;
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
BIN_LINK="$R/usr/local/bin/evgw"
UNIT="$R/etc/systemd/system/evgw.service"
UPDATE_UNITS="$R/etc/systemd/system/evgw-update.path $R/etc/systemd/system/evgw-update.service"
SYSUSERS="$R/usr/lib/sysusers.d/evgw.conf"
TMPFILES="$R/usr/lib/tmpfiles.d/evgw.conf"

systemctl_root() {
  if [ "$LIVE" = 1 ]; then systemctl "$@"; else systemctl --root="$ROOT" "$@"; fi
}

if [ "$UNINSTALL" = 1 ]; then
  if [ "$LIVE" = 1 ]; then systemctl disable --now evgw.service evgw-update.path 2>/dev/null || true
  else systemctl_root disable evgw.service evgw-update.path >/dev/null 2>&1 || true; fi
  # shellcheck disable=SC2086  # two paths
  rm -f "$UNIT" $UPDATE_UNITS "$SYSUSERS" "$TMPFILES"
  case "$(readlink "$BIN_LINK" 2>/dev/null)" in */opt/evgw/current/bin/evgw) rm -f "$BIN_LINK" ;; esac
  rm -rf "$OPT"
  [ "$LIVE" = 1 ] && systemctl daemon-reload
  echo "evgw uninstalled; kept $R/etc/evgw (configuration) and $R/var/lib/evgw (ledger, key)"
  exit 0
fi

command -v "$PYTHON" >/dev/null || die "$PYTHON not found: install Python >= 3.11"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "$PYTHON is older than 3.11"
[ -e "$SOURCE" ] || die "source $SOURCE does not exist"
SRC_DIR="$SOURCE"; [ -d "$SOURCE" ] || SRC_DIR="$(dirname "${BASH_SOURCE[0]}")/.."

if [ -d "$SOURCE" ]; then
  VERSION="$("$PYTHON" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$SOURCE/pyproject.toml")"
else
  VERSION="$(basename "$SOURCE" | cut -d- -f2)"
fi
case "$VERSION" in ''|*/*|.*) die "cannot tell the version of $SOURCE" ;; esac

echo "installing evgw $VERSION from $SOURCE into ${ROOT}"
mkdir -p "$OPT/releases" "$R/etc/systemd/system" "$R/usr/lib/sysusers.d" "$R/usr/lib/tmpfiles.d" \
         "$R/etc/evgw" "$R/var/lib/evgw" "$R/usr/local/bin"
RELEASE="$OPT/releases/$VERSION"
if [ ! -x "$RELEASE/bin/python" ]; then
  "$PYTHON" -m venv "$RELEASE"
fi
"$RELEASE/bin/pip" install --quiet --disable-pip-version-check "$SOURCE"
# switch `current` atomically (a new link renamed over the old one), then the PATH link
ln -sfn "releases/$VERSION" "$OPT/current.new" && mv -Tf "$OPT/current.new" "$OPT/current"
ln -sfn ../../../opt/evgw/current/bin/evgw "$BIN_LINK"
rm -rf "$OPT/venv"                 # the layout before releases/
EVGW="$OPT/current/bin/evgw"
mkdir -p "$OPT/docs" && cp "$SRC_DIR"/docs/*.md "$OPT/docs/" 2>/dev/null || true

install -m 644 "$SRC_DIR/systemd/evgw.sysusers" "$SYSUSERS"
install -m 644 "$SRC_DIR/systemd/evgw.tmpfiles" "$TMPFILES"
install -m 644 "$SRC_DIR/systemd/evgw.service" "$UNIT"
for unit in evgw-update.path evgw-update.service; do
  install -m 644 "$SRC_DIR/systemd/$unit" "$R/etc/systemd/system/$unit"
done
if [ "$LIVE" = 1 ]; then systemd-sysusers "$SYSUSERS"; else systemd-sysusers --root="$ROOT" "$SYSUSERS"; fi
uid_of() { awk -F: -v u="$1" '$1 == u { print $3 }' "$R/etc/passwd"; }
gid_of() { awk -F: -v g="$1" '$1 == g { print $3 }' "$R/etc/group"; }
EVGW_UID="$(uid_of evgw)"; EVGW_GID="$(gid_of evgw)"
[ -n "$EVGW_UID" ] || die "the evgw user was not created in $R/etc/passwd"

# sticky and group-writable: the service replaces its own evgw.toml (config apply), while the
# files root owns here (release.pub) stay out of its reach
chown 0:"$EVGW_GID" "$R/etc/evgw" && chmod 1770 "$R/etc/evgw"
chown "$EVGW_UID:$EVGW_GID" "$R/var/lib/evgw" && chmod 700 "$R/var/lib/evgw"
if [ ! -e "$R/etc/evgw/evgw.toml" ]; then
  "$EVGW" config example > "$R/etc/evgw/evgw.toml"
  chmod 640 "$R/etc/evgw/evgw.toml"
  echo "wrote $R/etc/evgw/evgw.toml from the example: edit it, then run evgw config check"
fi
chown "$EVGW_UID:$EVGW_GID" "$R/etc/evgw/evgw.toml"  # the service's to replace (config apply)
if [ ! -e "$R/etc/evgw/secrets.toml" ]; then
  "$EVGW" config example --secrets > "$R/etc/evgw/secrets.toml"
  chown "$EVGW_UID:$EVGW_GID" "$R/etc/evgw/secrets.toml"; chmod 600 "$R/etc/evgw/secrets.toml"
fi
if [ ! -e "$R/var/lib/evgw/gateway.key" ]; then
  "$EVGW" keys generate --key "$R/var/lib/evgw/gateway.key" >/dev/null
  chown "$EVGW_UID:$EVGW_GID" "$R/var/lib/evgw/gateway.key"; chmod 600 "$R/var/lib/evgw/gateway.key"
  echo "generated the gateway key $R/var/lib/evgw/gateway.key (evgw keys show prints its public key)"
fi

if [ -n "$RELEASE_KEY" ]; then
  install -m 644 "$RELEASE_KEY" "$R/etc/evgw/release.pub"
  echo "installed the release key $R/etc/evgw/release.pub: updates must be signed by it"
fi

if [ "$LIVE" = 1 ]; then
  systemd-tmpfiles --create "$TMPFILES" || true
  systemctl daemon-reload
  if [ "$START" = 1 ]; then systemctl enable --now evgw.service evgw-update.path
  else systemctl enable evgw.service evgw-update.path; fi
else
  systemctl_root enable evgw.service evgw-update.path >/dev/null
fi
echo "evgw $VERSION installed: $RELEASE (current), $BIN_LINK, unit $UNIT (enabled)"
