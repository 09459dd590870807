#!/bin/sh
# Installs the Debian packages listed in share/cx/debian-packages.txt that are missing.
# Asks dpkg first and touches apt only when something is missing; as root it runs apt-get,
# otherwise it prints the exact apt-get line and fails.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
list="$here/share/cx/debian-packages.txt"
missing=""
for p in $(grep -v '^[[:space:]]*#' "$list" | sed 's/[[:space:]]*#.*//' ); do
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  case "$st" in
    *"install ok installed"*) ;;
    *) missing="$missing $p" ;;
  esac
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  echo "deps: installing:$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends $missing >&2
else
  echo "deps: missing Debian packages; run:" >&2
  echo "  sudo apt-get install -y --no-install-recommends$missing" >&2
  exit 1
fi
