#!/usr/bin/env bash
# Build the CPU emulation of the message_attention CUDA kernels (see cuda_emulation.h) into
# OUT_DIR (default: build/cuda_emu). Needs g++ >= 11 (C++20), the CUDA headers (cuda_fp16.h,
# cuda_bf16.h; no GPU, no driver, no CUDA runtime library) and pybind11.
# Usage: tests/cuda_emu/build.sh [OUT_DIR]   -> prints the path of the built module
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="${1:-$ROOT/build/cuda_emu}"
mkdir -p "$OUT"
CUDA_INC="${CUDA_HOME:-/usr/local/cuda}/include"
PY="${PYTHON:-python}"
PY_INC="$($PY -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
PB_INC="$($PY -c 'import pybind11; print(pybind11.get_include())')"
SUFFIX="$($PY -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
TARGET="$OUT/rstg_fast_cuda_emu$SUFFIX"
${CXX:-g++} -std=c++20 -O1 -g -fPIC -shared -pthread -Wall -Wno-unknown-pragmas \
  -DRSTG_CUDA_EMULATION -DRSTG_WITH_CUDA ${EMU_CXXFLAGS:-} \
  -I"$ROOT/csrc" -I"$ROOT/python_bindings" -I"$ROOT/tests/cuda_emu" -I"$CUDA_INC" -I"$PY_INC" -I"$PB_INC" \
  -x c++ "$ROOT/csrc/cuda/message_attention_forward.cu" "$ROOT/csrc/cuda/message_attention_backward.cu" \
  -x none "$ROOT/tests/cuda_emu/module.cpp" -o "$TARGET"
echo "$TARGET"
