#!/usr/bin/env bash
# The CPU kernels' narrower code paths, which a native build on an AVX-512 machine never
# runs: 16-byte vectors (the portable x86-64-v2 build, RSTG_FAST_NATIVE=0) and 32-byte
# vectors (the same with -mavx2 -mfma), both on 6 x 2 micro-tiles instead of 8 x 3. A width
# bug that only these paths had (wrong gradients for some D) went unseen by a native-only CI.
# Each variant is built as a wheel, installed into its own folder, checked to be the build it
# claims (vector width, import path), and run through the cpu backend's tests.
# Usage (from the repository root, inside the CI venv): bash .ci/narrow_cpu_builds.sh
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for variant in "16:" "32:-mavx2 -mfma"; do
  bytes=${variant%%:*}
  flags=${variant#*:}
  if [[ $flags == *avx2* ]] && ! { grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; }; then
    echo "== skipping the 32-byte-vector build: this CPU has no AVX2/FMA to run it"
    continue
  fi
  echo "== CPU kernels built for ${bytes}-byte vectors (RSTG_FAST_NATIVE=0 ${flags:+CXXFLAGS=\"$flags\"})"
  site="$work/site$bytes"
  RSTG_FAST_NATIVE=0 RSTG_FAST_CUDA=0 CXXFLAGS="$flags" \
    pip wheel --no-deps --no-cache-dir -q -w "$work/wheel$bytes" .
  pip install --no-deps -q --target "$site" "$work"/wheel"$bytes"/*.whl
  # The import path here; the vector width inside the pytest run (test_build, below).
  (cd "$work" && PYTHONPATH="$site" python - "$site") <<'EOF'  # not from the tree: its rstg_fast would shadow the build
import sys
import rstg_fast

site = sys.argv[1]
assert rstg_fast.__file__.startswith(site), f"imported {rstg_fast.__file__}, not the build in {site}"
print("testing", rstg_fast.__file__, rstg_fast.build_info())
EOF
  # test_build_info_reports_the_cpu_extension fails unless the build under test is this one.
  PYTHONPATH="$site" RSTG_EXPECT_CPU_VECTOR_BYTES="$bytes" pytest -q -p no:cacheprovider \
    tests/test_build.py::test_build_info_reports_the_cpu_extension \
    tests/ops/test_cpu_backend.py "tests/ops/test_message_attention.py" -k "cpu or build_info"
done
