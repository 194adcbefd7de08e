#!/bin/sh
# `make fuzz`: runs each fuzz target for FUZZ_SECONDS (default 60), one after another (they
# share the CPU), on the stable toolchain without a sanitizer (`-s none`), and prints each
# target's total executions and whether it found a crash. Seeds come from the committed
# fuzz/corpus/<target>/ (read only); what a run discovers goes to fuzz/target/corpus/<target>/,
# crash inputs to fuzz/artifacts/<target>/. Exits 1 if any target crashed.
#
#   FUZZ_SECONDS=600 make fuzz                  # longer campaign
#   FUZZ_TARGETS="feed_packets" make fuzz       # some targets only
#   FUZZ_RUNS=10000000 make fuzz                # stop each target after this many executions
#                                               # (FUZZ_SECONDS still bounds each target's time)
set -u
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
runs_limit=${FUZZ_RUNS:--1}
targets=${FUZZ_TARGETS:-"feed_packets order_update rest_response control_request config_toml replay_csv"}

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: installing it with cargo install"
    cargo install cargo-fuzz --locked || exit 1
fi
cargo fuzz build -s none || exit 1

summary=fuzz/target/summary.txt
mkdir -p fuzz/target
printf '%-16s %8s %14s  %s\n' target seconds executions outcome | tee "$summary"
failed=0
for t in $targets; do
    mkdir -p "fuzz/target/corpus/$t" "fuzz/artifacts/$t"
    before=$(ls "fuzz/artifacts/$t" | wc -l)
    log=fuzz/target/$t.log
    started=$(date +%s)
    cargo fuzz run -s none "$t" "fuzz/target/corpus/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -runs="$runs_limit" -print_final_stats=1 >"$log" 2>&1
    rc=$?
    elapsed=$(( $(date +%s) - started ))
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    after=$(ls "fuzz/artifacts/$t" | wc -l)
    if [ "$rc" -eq 0 ] && [ "$after" -eq "$before" ]; then
        outcome="no crash"
    else
        failed=1
        outcome="CRASH (exit $rc): $(ls -t "fuzz/artifacts/$t" | head -n 1 | sed "s#^#fuzz/artifacts/$t/#"), log $log"
    fi
    printf '%-16s %8s %14s  %s\n' "$t" "$elapsed" "${runs:-?}" "$outcome" | tee -a "$summary"
done
exit $failed
