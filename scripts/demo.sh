#!/usr/bin/env bash
# The main demo: installs and builds everything (scripts/setup.sh, as root), then runs a whole
# attested mesh on this machine — 1 Coordinator + N Nodes (default 3), each in its own network
# namespace with its own swtpm and meshd, activated by the admin through meshctl — and prints
# every peer with its ping RTT through the VPN. Flags go to localmesh (see --help); --keep keeps
# the mesh up until Ctrl-C. Everything it made is removed when it ends. Setup's and localmesh's
# progress go to stderr; stdout holds only the table of peers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
exec node bin/localmesh.js "$@"
