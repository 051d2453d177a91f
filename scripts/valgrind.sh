#!/usr/bin/env bash
# Runs the Rust test binaries under valgrind's memcheck: any invalid read or write, use of
# uninitialised memory, or definite leak fails the run. Usage: scripts/valgrind.sh
# (valgrind from Debian's package). Skipped under valgrind: the huge-array tests (valgrind is
# ~50x slower), and special_values_f64, whose log1p(-0) = -0 valgrind's emulation of fused
# multiply-add gets as +0 (natively it passes at every level; valgrind has no AVX-512, so the
# AVX2 level is the one it runs).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }

# Build the test binaries and collect their paths.
bins=$(cargo test --no-run --message-format=json --lib --test api --test proptest_api \
        --test fuzz_corpus 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("reason") == "compiler-artifact" and msg.get("executable") and msg["profile"]["test"]:
        print(msg["executable"])
')

status=0
for bin in $bins; do
    echo "== valgrind $(basename "$bin")"
    PROPTEST_CASES=${PROPTEST_CASES:-16} valgrind -q --error-exitcode=99 --leak-check=full \
        --errors-for-leak-kinds=definite --show-leak-kinds=definite \
        "$bin" --test-threads=2 \
        --skip zero_stride_inputs_are_read_in_place --skip exhaustive \
        --skip special_values_f64 || status=$?
done
exit $status
