#!/usr/bin/env bash
# Reruns blade's fuzz targets (fuzz/fuzz_targets/*.rs), one at a time, each for a given time.
#
#   scripts/fuzz.sh [SECONDS] [TARGET ...]
#
#   SECONDS   time per target (default 600)
#   TARGET    targets to run (default: all, as listed by `cargo fuzz list`)
#
# Environment:
#   FUZZ_KEEP_GOING=1   don't stop at the first crash: libFuzzer's fork mode (one child at a
#                       time) records every crash, timeout and OOM in fuzz/artifacts/<target>/
#   FUZZ_ARGS="..."     extra libFuzzer flags (e.g. "-max_len=65536")
#
# Needs the nightly toolchain (`rustup toolchain install nightly`); installs cargo-fuzz if it is
# missing. Builds without a sanitizer (the code forbids `unsafe`: we hunt panics) but with debug
# assertions and overflow checks (`-s none -a`). Every input that finds new coverage is added to
# fuzz/corpus/<target>/ (commit it; minimise with `cargo +nightly fuzz cmin -s none -a <target>`
# when it grows). A crash stops the target, leaves its input in fuzz/artifacts/<target>/ and
# makes the script exit non-zero; `cargo +nightly fuzz run -s none -a <target> <file>` replays it.
# Logs: fuzz/logs/<target>.log. The corpus replay test (`cargo test -p blade-fuzz`) runs every
# corpus file through its harness without the fuzzer.
set -euo pipefail

cd "$(dirname "$0")/../fuzz"
secs="${1:-600}"
shift || true
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -eq 0 ]; then
    echo "usage: scripts/fuzz.sh [SECONDS] [TARGET ...] (SECONDS a positive integer, got '$secs')" >&2
    exit 2
fi
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "scripts/fuzz.sh: needs the nightly toolchain: rustup toolchain install nightly" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz ..." >&2
    cargo install cargo-fuzz
fi
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

flags=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048
       -print_final_stats=1)
if [ "${FUZZ_KEEP_GOING:-0}" = 1 ]; then
    flags+=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
fi
# shellcheck disable=SC2206
flags+=(${FUZZ_ARGS:-})

mkdir -p logs
status=0
summary=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    echo "=== $t: ${secs}s ===" >&2
    start=$(date +%s)
    touch "logs/.$t.start"
    rc=0
    cargo +nightly fuzz run -s none -a "$t" "corpus/$t" -- "${flags[@]}" \
        >"logs/$t.log" 2>&1 || rc=$?
    took=$(( $(date +%s) - start ))
    runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "logs/$t.log" | grep -oE '[0-9]+$' | tail -1 || true)
    [ -n "$runs" ] || runs=$(grep -oE '^#[0-9]+' "logs/$t.log" | tail -1 | tr -d '#' || true)
    found=$(find "artifacts/$t" -type f -newer "logs/.$t.start" | wc -l)
    files=$(find "corpus/$t" -type f | wc -l)
    line="$t: rc=$rc runs=${runs:-?} time=${took}s new_artifacts=$found corpus=$files files"
    echo "$line" >&2
    summary+=("$line")
    [ "$rc" -eq 0 ] && [ "$found" -eq 0 ] || status=1
done
printf '%s\n' "${summary[@]}"
exit "$status"
