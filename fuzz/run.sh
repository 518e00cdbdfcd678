#!/usr/bin/env bash
# Runs fuzz targets for a bounded time each, over the checked-in corpus plus the
# public samples the tests use. Exits non-zero on the first crash, timeout or
# out-of-memory input; libFuzzer writes it to fuzz/artifacts/<target>/.
#
#   fuzz/run.sh                      every CI target, $FUZZ_SECONDS (default 35) each
#   fuzz/run.sh 600 camt mt940       ten minutes each on the named targets
#
# Needs `cargo install cargo-fuzz`. Stable Rust works because no sanitizer is
# asked for (`-s none`): libFuzzer's coverage guidance only needs `-C` flags.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-${FUZZ_SECONDS:-35}}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(csv_import camt mt940 rules_yaml rhai_script rhai_hooks plugin_pull)
fi

for t in "${targets[@]}"; do
    seeds=("fuzz/corpus/$t")
    case $t in
        camt) seeds+=(tests/samples/camt053 tests/samples/camt054) ;;
        mt940) seeds+=(tests/samples/mt940) ;;
        rhai_script | rhai_hooks) seeds+=(rules/scripts) ;;
    esac
    # New inputs go to the first folder, outside git, so the checked-in corpus only
    # changes when someone copies a worthwhile input there on purpose.
    scratch="fuzz/target/corpus/$t"
    mkdir -p "$scratch"
    echo "fuzz: $t for ${seconds}s"
    cargo fuzz run --sanitizer none --fuzz-dir fuzz "$t" "$scratch" "${seeds[@]}" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1536 -print_final_stats=1
done
