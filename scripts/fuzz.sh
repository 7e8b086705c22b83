#!/usr/bin/env bash
# Fuzzes every parser that takes outside input (fuzz/fuzz_targets, cargo-fuzz with libFuzzer
# and AddressSanitizer, on the nightly toolchain):
#   bash scripts/fuzz.sh            5 s per target, as ./dev test runs it
#   bash scripts/fuzz.sh 600        10 minutes per target
#   bash scripts/fuzz.sh 60 dns     one target
# Each target first replays its seeds (fuzz/corpus/TARGET, from the tests' inputs) and the
# inputs that once crashed it (fuzz/regressions/TARGET), then fuzzes from them. New inputs go
# to a scratch folder, not the repository; a crash stops the run with libFuzzer's report, and
# its input (fuzz/artifacts/TARGET/) belongs in fuzz/regressions/TARGET with a fix.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-5}"
[ $# -gt 0 ] && shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
cargo +nightly fuzz build
scratch=$(mktemp -d /tmp/flowscope-fuzz.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
printf '%-16s %12s %10s %8s\n' target executions exec/s seconds
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t" "regressions/$t"
  # Inputs that crashed once must never crash again.
  cargo +nightly fuzz run "$t" "regressions/$t" -- -runs=0 >"$scratch/$t.replay" 2>&1 ||
    { cat "$scratch/$t.replay" >&2; echo "fuzz $t: a regression input fails again" >&2; exit 1; }
  if ! cargo +nightly fuzz run "$t" "$scratch/$t" "corpus/$t" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -timeout=10 \
      >"$scratch/$t.log" 2>&1; then
    tail -n 60 "$scratch/$t.log" >&2
    echo "fuzz $t: failed (input saved under fuzz/artifacts/$t/)" >&2
    exit 1
  fi
  runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 \2/p' "$scratch/$t.log" | tail -n 1)
  set -- $runs
  printf '%-16s %12s %10s %8s\n' "$t" "${1:-?}" "$(( ${1:-0} / (${2:-1} > 0 ? ${2:-1} : 1) ))" "${2:-?}"
done
