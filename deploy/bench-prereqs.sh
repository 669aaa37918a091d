#!/bin/sh
# What `make bench` needs besides Python packages, from Debian: wrk, the
# load generator for throughput at saturation (a Python generator on the same
# cores tops out below what Flask serves). Installed when missing (as root),
# otherwise named with the command that installs it.
set -e
command -v wrk >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "make bench: installing wrk"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
else
  echo "make bench needs wrk — install it with: sudo apt-get install wrk" >&2
  exit 1
fi
