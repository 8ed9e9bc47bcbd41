#!/usr/bin/env bash
# The fault harness, long form: seeded schedules of SIGKILLs, terminated database
# sessions, crash-restarts of a private PostgreSQL, concurrent and duplicate
# deliveries in shuffled order, each compared with one clean load of the same
# files. Usage: scripts/fault-harness.sh [SCHEDULES] [SEED]   (default 1000, 1)
# The test command runs the short form (20 schedules) with the debug build.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_build_deps
cargo build --release -q -p quarry-cli -p quarry-tests --bin quarry --bin fault-harness
exec "${CARGO_TARGET_DIR:-target}/release/fault-harness" --schedules "${1:-1000}" --seed "${2:-1}"
