#!/usr/bin/env bash
# The web UI's speed and memory under load, in Debian's headless Chromium: RATE flows/s
# (default 5,000) from the replay server for SECONDS (default 60). Prints long tasks, the
# received rate, click latency and memory samples; exits 1 if a target is missed (see
# bench/ui_load.mjs). Needs scripts/setup.sh (chromium, node, tests/ui/node_modules) and
# scripts/build-ui.sh (ui/dist). Artefacts (trace, perf.json, screenshots) go to ARTIFACTS
# (default target/bench-ui).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RATE=${1:-5000}
SECONDS_=${2:-60}
[ -f "$ROOT/ui/dist/index.html" ] || { echo "no ui/dist: run scripts/build-ui.sh" >&2; exit 1; }
[ -d "$ROOT/tests/ui/node_modules/playwright-core" ] || { echo "no tests/ui/node_modules: run scripts/setup.sh" >&2; exit 1; }
export ARTIFACTS=${ARTIFACTS:-$ROOT/target/bench-ui}
RATE=$RATE SECONDS=$SECONDS_ node "$ROOT/bench/ui_load.mjs"
