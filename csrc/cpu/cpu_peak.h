// Peak-rate probes for the benchmarks (csrc/cpu/cpu_peak.cpp), not kernels.
#pragma once
#include <cstdint>

namespace rstg {

// Peak float32 FMA rate of this machine with `threads` threads: a register-only loop of
// independent vector FMAs (the widest vectors the build targets) run for about `seconds`.
double cpu_fma_peak_gflops(int threads, double seconds);

// Rate of the message_attention micro-kernel on cached data: every thread repeats the
// product of an [m, k] tile with a packed [k, n] panel set (as the forward's h @ W2^T) for
// about `seconds`. float32. FLOPs counted as 2 * m * n * k per product.
double cpu_microkernel_gflops(int threads, double seconds, int64_t m, int64_t k, int64_t n);

}  // namespace rstg
