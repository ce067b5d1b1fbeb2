#!/usr/bin/env bash
# Sets up everything (scripts/setup.sh), type-checks, and runs every test tier: unit, integration, e2e, vm.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Compile-time checks first (tests, bench and sources, strict, no unused locals), then the linter
# (typescript-eslint, recommended type-checked rules): either fails fast, before any test runs.
npm run typecheck --silent
npm run lint --silent
# setup.sh installed every real part: a test that cannot find one fails instead of skipping.
export AM_REQUIRE_E2E="${AM_REQUIRE_E2E:-1}" AM_REQUIRE_VM="${AM_REQUIRE_VM:-1}"
exec npx vitest run "$@"
