#!/bin/sh
# What `make test` needs besides Python packages, from Debian: docker-compose
# validates docker-compose.yml without an engine; Chromium runs the browser
# tests (Playwright drives it, no browser download); a CJK font so that
# screenshots show the Chinese. Installed when missing (as root), otherwise
# named with the command that installs them.
set -e
need=""
command -v docker-compose >/dev/null 2>&1 || need="$need docker-compose"
[ -x "${LINLI_CHROMIUM:-/usr/bin/chromium}" ] || need="$need chromium"
fc-list 2>/dev/null | grep -q "Noto Sans CJK" || need="$need fonts-noto-cjk"
[ -z "$need" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "make test: installing$need"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
else
  echo "make test needs:$need — install them with: sudo apt-get install$need" >&2
  exit 1
fi
