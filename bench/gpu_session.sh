#!/usr/bin/env bash
# One script for a GPU session through the device tool: build, GPU tests, benchmarks, report.
#
#   RSTG_BENCH_COMMIT=<hash> bash bench/gpu_session.sh [PHASE ...]
#
# PHASES (default: all = build test op model report), each logged under $OUT:
#   build   pip install --no-build-isolation . (CUDA kernels for sm_${RSTG_FAST_CUDA_ARCHS:-90})
#   test    pytest tests/ (the GPU test suites run where CUDA is available)
#   op      pytest bench/test_bench_message_attention.py bench/test_bench_paired.py -> record $OUT/bench-op${BENCH_TAG}.jsonl
#   model   pytest bench/test_bench_model.py              -> record $OUT/bench-model${BENCH_TAG}.jsonl
#   report  python bench/report.py over $OUT/bench-*.jsonl -> $OUT/benchmarks.md, benchmarks.png
# Every phase after build checks that the installed rstg_fast is this tree's build and builds
# it first when not (a fresh machine, or a call that found the last one given back).
#
# Environment: OUT (the device tool sets it; default ./gpu-out), RSTG_BENCH_COMMIT (the
# commit under test: the machine's copy of the tree has no .git), BENCH_ARGS (extra pytest
# arguments for op/model, e.g. "--bench-dtypes=bfloat16 --bench-shapes=paper,dense"),
# BENCH_TAG (suffix of the record names, to keep several calls' results apart),
# BENCH_RESUME_FROM (a folder of the tree holding records that earlier calls brought back:
# a phase whose bench-<phase>${BENCH_TAG}.jsonl is there copies it into $OUT and continues it
# with --bench-resume, measuring only the cases it lacks; needs RSTG_BENCH_COMMIT, and the
# suite refuses a record of another commit, device, thread count or --bench-scale),
# DEADLINE_S (seconds from the script's start by which everything must have ended, default
# 570: a device call is cut at 600; benchmark phases stop starting cases in time to end
# normally, and a phase with too little time left is skipped).
#
# One device call runs at most 10 minutes: a full run does not fit in one. The benchmark
# phases write --bench-record files (every case is appended as it ends, so a call cut short
# keeps what it measured). See docs/benchmarking.md ("On a GPU") for the sequence of calls
# and resuming; the records come back with each call and `python bench/report.py A.jsonl
# B.jsonl ...` merges them here.
set -uo pipefail
cd "$(dirname "$0")/.."

OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
export RSTG_FAST_CUDA_ARCHS="${RSTG_FAST_CUDA_ARCHS:-90}"
START=$(date +%s)
DEADLINE="${DEADLINE_S:-570}"
TAG="${BENCH_TAG:-}"
read -r -a EXTRA <<<"${BENCH_ARGS:-}"
RESUME_FROM="${BENCH_RESUME_FROM:-}"
STAMP_FILE="${TMPDIR:-/tmp}/rstg_fast_build_stamp"  # outside the tree: kept while the machine is warm
status=0

log() { printf '\n== %s  %s\n' "$(date -u +%H:%M:%S)" "$*"; }
remaining() { echo $((DEADLINE - ($(date +%s) - START))); }

tree_stamp() {
    # content hash of what pip installs: a changed source tree means a reinstall
    find rstg_fast csrc python_bindings CMakeLists.txt setup.py pyproject.toml -type f ! -name "*.so" ! -path "*__pycache__*" -print0 2>/dev/null |
        sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16
}

installed_ok() {
    # importable from outside the tree, built from these sources, with its extension
    [ -f "$STAMP_FILE" ] && [ "$(cat "$STAMP_FILE")" = "$(tree_stamp)" ] &&
        (cd / && "$PY" -c "import rstg_fast, sys; sys.exit(0 if rstg_fast.build_info()['cpu'] else 1)") 2>/dev/null
}

phase_build() {
    log "build: pip install --no-build-isolation . (sm_${RSTG_FAST_CUDA_ARCHS})"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    "$PY" -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
    if timeout "$(remaining)" "$PY" -m pip install --no-build-isolation --no-deps --no-index . >"$OUT/build.log" 2>&1; then
        tree_stamp >"$STAMP_FILE"
        (cd / && "$PY" -c "import rstg_fast; print('installed:', rstg_fast.__file__, rstg_fast.build_info())")
    else
        tail -n 40 "$OUT/build.log"
        echo "build FAILED (full log: build.log)"
        return 1
    fi
}

ensure_built() { installed_ok || phase_build; }

run_pytest() {  # name, record (or ""), pytest args...
    local name=$1 record=$2
    shift 2
    local args=("$@") left
    left=$(remaining)
    if [ "$left" -lt 60 ]; then
        echo "$name: skipped, only ${left}s left of DEADLINE_S=$DEADLINE"
        return 1
    fi
    # benchmarks: no case starts in the last 90 s (a case with a cold torch.compile of the
    # model takes about a minute), so the session ends before the hard timeout below (the
    # record keeps every finished case even when it does not)
    [ -n "$record" ] && args+=("--bench-record=$record" "--bench-deadline=$((left - 90 > 30 ? left - 90 : 30))")
    log "$name: pytest ${args[*]}"
    # plain `pytest` (not python -m): the source tree stays off sys.path, so the installed
    # build (with its compiled kernels) is the one imported
    timeout "$((left - 5))" "$PY" -c "import sys, pytest; sys.path.pop(0) if sys.path[0] in ('', '.') else None; sys.exit(pytest.main(sys.argv[1:]))" \
        "${args[@]}" 2>&1 | tee "$OUT/$name.log" | grep -E --line-buffered "passed|failed|error|Error|SKIPPED|FAILED|Wrote|bench-resume" | tail -n 60
    local rc=${PIPESTATUS[0]}
    echo "$name: exit $rc"
    return "$rc"
}

phase_test() { ensure_built && run_pytest tests "" tests/ -q -rs -p no:cacheprovider; }

resume_args() {  # name: prints --bench-resume after copying BENCH_RESUME_FROM/<name>.jsonl into $OUT
    local name=$1 from
    [ -n "$RESUME_FROM" ] || return 0
    from="$RESUME_FROM/$name.jsonl"
    if [ ! -f "$from" ]; then
        echo "$name: no $from to resume, starting a new record" >&2
        return 0
    fi
    # the record names its commit; without RSTG_BENCH_COMMIT both calls would say "unknown"
    # and the suite could not refuse a record of another commit
    if [ -z "${RSTG_BENCH_COMMIT:-}" ]; then
        echo "$name: BENCH_RESUME_FROM needs RSTG_BENCH_COMMIT (the commit the record was made at)" >&2
        return 1
    fi
    [ "$from" -ef "$OUT/$name.jsonl" ] || cp "$from" "$OUT/$name.jsonl" || return 1
    echo "--bench-resume"
}

bench_phase() {  # name, pytest files...: the cases go to the record $OUT/<name>.jsonl
    local name=$1 resume
    shift
    resume=$(resume_args "$name") || return 1
    # shellcheck disable=SC2086  # $resume: empty or one word
    ensure_built && run_pytest "$name" "$OUT/$name.jsonl" "$@" "${BENCH_COMMON[@]}" $resume "${EXTRA[@]}"
}

BENCH_COMMON=(-q -rs -p no:cacheprovider --benchmark-max-time=0.25 -W "ignore::DeprecationWarning")
phase_op() { bench_phase "bench-op$TAG" bench/test_bench_message_attention.py bench/test_bench_paired.py bench/test_gate.py; }
phase_model() { bench_phase "bench-model$TAG" bench/test_bench_model.py; }
phase_report() {
    local runs=()
    for f in "$OUT"/bench-*.jsonl; do [ -s "$f" ] && runs+=("$f"); done
    if [ ${#runs[@]} -eq 0 ]; then
        echo "report: no bench-*.jsonl in $OUT (run the op/model phases in this call, or report.py here)"
        return 1
    fi
    log "report: ${runs[*]}"
    "$PY" bench/report.py "${runs[@]}" --no-store --md "$OUT/benchmarks.md" --plot "$OUT/benchmarks.png"
}

phases=("$@")
[ ${#phases[@]} -eq 0 ] && phases=(all)
[ "${phases[*]}" = "all" ] && phases=(build test op model report)
log "gpu_session: ${phases[*]} (commit ${RSTG_BENCH_COMMIT:-unknown}; outputs in $OUT)"
for p in "${phases[@]}"; do
    case "$p" in
    build | test | op | model | report) "phase_$p" || status=1 ;;
    *) echo "unknown phase $p (build, test, op, model, report, all)"; status=2 ;;
    esac
done
log "done (exit $status)"
exit "$status"
