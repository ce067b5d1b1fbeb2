#!/usr/bin/env bash
# Installs the built project (run `bash scripts/setup.sh` first) to /opt/attested-mesh and the
# systemd unit. Usage: bash deploy/install.sh [--prefix DIR] [--unit-dir DIR] [--no-enable]
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=/opt/attested-mesh unit_dir=/etc/systemd/system enable=1
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2;;
    --unit-dir) unit_dir="$2"; shift 2;;
    --no-enable) enable=0; shift;;
    -h|--help) sed -n 2,3p "$0" | sed 's/^# //'; exit 0;;
    *) echo "install: unknown argument $1 (see --help)" >&2; exit 2;;
  esac
done
for f in dist/src/cmd/meshd.js native/build/Release/attested_mesh_native.node node_modules/@grpc/grpc-js; do
  [ -e "$f" ] || { echo "install: $f missing: run bash scripts/setup.sh first" >&2; exit 1; }
done
mkdir -p "$prefix" "$unit_dir"
# Only what meshd and meshctl run: no sources, tests or dev tools.
tar -cf - package.json README.md bin dist/src proto native/build/Release/attested_mesh_native.node node_modules \
  | tar -xf - -C "$prefix"
sed "s#/opt/attested-mesh#$prefix#g" deploy/meshd.service > "$unit_dir/meshd.service"
chmod 0644 "$unit_dir/meshd.service"
echo "install: $prefix and $unit_dir/meshd.service; flags go in /etc/default/meshd (MESHD_ARGS=...)" >&2
if [ "$enable" = 1 ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload && systemctl enable meshd.service
fi
