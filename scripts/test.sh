#!/usr/bin/env bash
# Sets up everything (scripts/setup.sh) and runs every test tier: unit, integration, e2e, vm.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec npx vitest run "$@"
