#!/usr/bin/env bash
# Installs everything attested-mesh needs on a fresh Debian 12 machine (as root) and builds it.
# Idempotent: packages already present are kept; npm ci and the builds run every time.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (apt-get, network namespaces, swtpm and cryptsetup need it)" >&2
  exit 1
fi

packages=(
  swtpm swtpm-tools tpm2-tools libtss2-dev
  wireguard-go wireguard-tools
  cryptsetup-bin strace
  etcd-server
  iproute2 iputils-ping nftables
  g++ make python3 pkg-config
  qemu-system-x86 busybox kmod e2fsprogs
  systemd
)
# The VM tier boots /boot's Debian kernel; install one only when the machine has none.
compgen -G "/boot/vmlinuz-*" >/dev/null || packages+=(linux-image-amd64)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "setup: npm ci and build" >&2
npm ci --no-audit --no-fund --loglevel=error
npm run build:native --silent
npm run build --silent
