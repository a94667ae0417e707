// Peak-rate probes for the benchmarks: the machine's float32 vector-FMA peak, and the rate
// of the message_attention micro-kernel on cached data (see cpu_peak.h).
#include <atomic>
#include <chrono>
#include <vector>

#include "cpu/ma_gemm.h"
#include "cpu/ma_tile.h"
#include "cpu/cpu_peak.h"
#include "cpu/message_attention_cpu.h"

namespace rstg {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// 2 * 12 independent FMA chains: enough to cover 4-cycle latency on two FMA ports.
constexpr int kChains = 24;

int64_t fma_loop(int64_t iters, float* sink) {
  using V = cpu::Vec<float>;
  V acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = V{} + float(i) * 1e-3f;
  V mul = V{} + 0.999999f, add = V{} + 1e-7f;
  for (int64_t n = 0; n < iters; ++n) {
#pragma GCC unroll 32
    for (int i = 0; i < kChains; ++i) acc[i] = acc[i] * mul + add;
  }
  float s = 0.0f;
  for (int i = 0; i < kChains; ++i) s += acc[i][0];
  *sink = s;
  return iters * kChains * cpu::kLanes<float> * 2;
}

}  // namespace

int cpu_vector_bytes() { return cpu::kVecBytes; }

double cpu_fma_peak_gflops(int threads, double seconds) {
  threads = cpu::clamp_threads(threads);
  std::vector<double> rate(threads, 0.0);
  std::vector<float> sink(threads, 0.0f);
#ifdef RSTG_WITH_OPENMP
#pragma omp parallel num_threads(threads)
#endif
  {
    const int tid = cpu::thread_id();
    int64_t flops = 0;
    fma_loop(1 << 16, &sink[tid]);  // warm up (frequency ramp, page-in)
    const auto t0 = Clock::now();
    do flops += fma_loop(1 << 18, &sink[tid]);
    while (seconds_since(t0) < seconds);
    rate[tid] = double(flops) / seconds_since(t0) * 1e-9;
  }
  double total = 0.0;
  for (double r : rate) total += r;
  return total;
}

double cpu_microkernel_gflops(int threads, double seconds, int64_t m, int64_t k, int64_t n) {
  using T = float;
  threads = cpu::clamp_threads(threads);
  const int64_t Mp = cpu::round_up(m, cpu::kMR), Np = cpu::round_up(n, cpu::kLanes<T>);
  const int64_t Kp = k;
  std::vector<double> rate(threads, 0.0);
#ifdef RSTG_WITH_OPENMP
#pragma omp parallel num_threads(threads)
#endif
  {
    const int tid = cpu::thread_id();
    cpu::Scratch<T> a(Mp * Kp), w(n * k), packed(Np * k), c(Mp * Np);
    for (int64_t i = 0; i < Mp * Kp; ++i) a.get()[i] = T((i * 7) % 13) * T(0.01);
    for (int64_t i = 0; i < n * k; ++i) w.get()[i] = T((i * 5) % 11) * T(0.01);
    for (int64_t p = 0; p < cpu::num_panels<T>(n); ++p) cpu::pack_panel(w.get(), n, k, true, p, packed.get());
    int64_t reps = 0;
    cpu::gemm<T, false>(Mp, Np, k, a.get(), Kp, packed.get(), true, 0, c.get(), Np);
    const auto t0 = Clock::now();
    do {
      cpu::gemm<T, false>(Mp, Np, k, a.get(), Kp, packed.get(), true, 0, c.get(), Np);
      ++reps;
    } while (seconds_since(t0) < seconds);
    rate[tid] = 2.0 * double(m) * double(n) * double(k) * double(reps) / seconds_since(t0) * 1e-9;
  }
  double total = 0.0;
  for (double r : rate) total += r;
  return total;
}

}  // namespace rstg
