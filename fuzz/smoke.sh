#!/usr/bin/env bash
# Fuzz smoke test on stable Rust: builds every target of fuzz/ with libFuzzer's coverage instrumentation (the
# sancov flags cargo-fuzz would pass, minus the nightly-only sanitizer) and runs each for a bounded time from
# the checked-in seed corpora. Exits non-zero if any target crashes; one summary line per target.
#
#   fuzz/smoke.sh                 every target, FUZZ_SECONDS (default 10) each, two at a time
#   FUZZ_SECONDS=300 fuzz/smoke.sh token_verify
#
# Needs: stable Rust and a C++ compiler (libfuzzer-sys compiles libFuzzer). Crashing inputs are kept in
# fuzz/artifacts/<target>/; reproduce one with fuzz/target/<host>/fuzz/<target> <file>.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
FUZZ_DIR=$PWD
ALL_TARGETS=(token_verify jwks_load config_parse canonical_path policy_eval mcp_list mcp_request revocation_inputs dpop_proof)
if (($#)); then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi
for t in "${TARGETS[@]}"; do
    [[ " ${ALL_TARGETS[*]} " == *" $t "* ]] || { echo "fuzz-smoke: unknown target $t (have: ${ALL_TARGETS[*]})"; exit 2; }
done
SECONDS_EACH=${FUZZ_SECONDS:-10}
JOBS=${FUZZ_JOBS:-2}
CARGO=${CARGO:-cargo}
HOST=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$FUZZ_DIR/target}

declare -A MAX_LEN=([token_verify]=9000 [jwks_load]=16384 [config_parse]=16384 [canonical_path]=2048 [policy_eval]=4096 [mcp_list]=8192 [mcp_request]=4096 [revocation_inputs]=8192 [dpop_proof]=4096)

# The instrumentation cargo-fuzz uses (sanitizer "none"), all stable codegen options. With an explicit
# --target, RUSTFLAGS reach only the target's crates, not build scripts or proc-macros.
export RUSTFLAGS="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 -Cforce-frame-pointers --cfg fuzzing"

start=$(date +%s)
bins=()
for t in "${TARGETS[@]}"; do bins+=(--bin "$t"); done
echo "fuzz-smoke: building ${TARGETS[*]} ($HOST, profile fuzz)"
$CARGO build --quiet --profile fuzz --target "$HOST" "${bins[@]}"
built=$(date +%s)
echo "fuzz-smoke: built in $((built - start))s; running each target for ${SECONDS_EACH}s, $JOBS at a time"

BIN_DIR=$CARGO_TARGET_DIR/$HOST/fuzz
WORK=$FUZZ_DIR/work
LOGS=$WORK/logs
mkdir -p "$LOGS"

run_target() {
    local t=$1
    local corpus=$WORK/corpus/$t artifacts=$FUZZ_DIR/artifacts/$t/
    mkdir -p "$corpus" "$artifacts"
    # The first corpus directory receives new inputs; the checked-in seeds are only read.
    "$BIN_DIR/$t" -max_total_time="$SECONDS_EACH" -max_len="${MAX_LEN[$t]}" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$artifacts" "$corpus" "$FUZZ_DIR/corpus/$t" >"$LOGS/$t.log" 2>&1
}

summary() {
    local t=$1 status=$2 log=$LOGS/$1.log
    local runs cov corp
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1 || true)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)
    corp=$(grep -o 'corp: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)
    if [[ $status == 0 ]]; then
        printf 'fuzz-smoke: %-15s ok      %9s runs in %ss, coverage %s, corpus %s\n' "$t" "${runs:-?}" "$SECONDS_EACH" \
            "${cov:-?}" "${corp:-?}"
    else
        printf 'fuzz-smoke: %-15s FAILED  exit %s after %s runs; log %s, crashing input in %s\n' "$t" "$status" \
            "${runs:-?}" "$log" "$FUZZ_DIR/artifacts/$t/"
        grep -m 20 -E 'panicked|ERROR: libFuzzer|deadly signal|SUMMARY|Test unit written' "$log" | sed 's/^/    /' || true
    fi
}

failed=0
for ((i = 0; i < ${#TARGETS[@]}; i += JOBS)); do
    batch=("${TARGETS[@]:i:JOBS}")
    pids=()
    for t in "${batch[@]}"; do
        run_target "$t" &
        pids+=($!)
    done
    for j in "${!batch[@]}"; do
        status=0
        wait "${pids[$j]}" || status=$?
        summary "${batch[$j]}" "$status"
        [[ $status == 0 ]] || failed=$((failed + 1))
    done
done

echo "fuzz-smoke: ${#TARGETS[@]} targets, $failed failed, $(($(date +%s) - start))s in all (build $((built - start))s)"
[[ $failed == 0 ]]
