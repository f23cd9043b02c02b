#!/usr/bin/env bash
# Smoke test of the fuzz targets on stable Rust, so they cannot rot (a step
# of scripts/test.sh; real fuzzing is `cargo fuzz run`, docs/fuzzing.md):
#
#   bash fuzz/run-smoke.sh
#
# 1. builds the fuzz crate (library, the libFuzzer binaries, the test);
# 2. fuzz/tests/smoke.rs replays fuzz/seeds/<target>/ through each target's
#    body, then up to 20,000 deterministic mutations of the seeds (at most
#    4 s per target);
# 3. each libFuzzer binary (uninstrumented on stable) runs its seeds once,
#    so the entry points themselves are exercised too.
#
# Build cache: $TG_FUZZ_TARGET_DIR (default ~/.cache/tidegate/fuzz-target),
# apart from the main one because cargo-fuzz builds with other flags.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
export CARGO_TARGET_DIR=${TG_FUZZ_TARGET_DIR:-$HOME/.cache/tidegate/fuzz-target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

cargo test --tests
for target in handshake scanner mux_codec config chunked path framing upstream_response jwt; do
  out=$("$CARGO_TARGET_DIR/debug/$target" seeds/"$target"/* 2>&1) || { echo "$out"; exit 1; }
  echo "$target: $(grep -c '^Executed' <<<"$out") seeds through the libFuzzer entry point"
done
echo "fuzz smoke: ok"
