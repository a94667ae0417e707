#!/usr/bin/env bash
# Compile every csrc/cuda/*.cu with nvcc for sm_80 and sm_90, warnings as errors (the flags of
# CMakeLists.txt), without building the module. CI runs it on machines with nvcc and no GPU.
# Usage: tools/check_cuda_compile.sh            (exits 0 with a note when nvcc is absent)
#        RSTG_REQUIRE_NVCC=1 tools/check_cuda_compile.sh   (absent nvcc is a failure)
set -euo pipefail
cd "$(dirname "$0")/.."

NVCC="${CUDACXX:-nvcc}"
if ! command -v "$NVCC" >/dev/null 2>&1; then
  if [ "${RSTG_REQUIRE_NVCC:-0}" = "1" ]; then
    echo "check_cuda_compile: nvcc not found" >&2
    exit 1
  fi
  echo "check_cuda_compile: nvcc not found, CUDA sources not compiled"
  exit 0
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
"$NVCC" --version | tail -n 1
status=0
for src in csrc/cuda/*.cu; do
  start=$(date +%s)
  if "$NVCC" -std=c++17 -O3 --expt-relaxed-constexpr -Werror=all-warnings -Xcompiler=-Wall \
      -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
      -DRSTG_WITH_CUDA=1 '-DRSTG_CUDA_ARCHS="80,90"' -Icsrc -c "$src" -o "$out/$(basename "$src").o"; then
    echo "ok   $src ($(( $(date +%s) - start )) s)"
  else
    echo "FAIL $src" >&2
    status=1
  fi
done
exit $status
