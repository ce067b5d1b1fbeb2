#!/usr/bin/env bash
# Sets up everything (scripts/setup.sh), type-checks, and runs every test tier: unit, integration, e2e, vm.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Compile-time checks first (tests, bench and sources, strict, no unused locals), then the linter
# (typescript-eslint, recommended type-checked rules): either fails fast, before any test runs.
npm run typecheck --silent
npm run lint --silent
exec npx vitest run "$@"
