// Per-tile building blocks shared by the forward and backward CPU kernels of
// message_attention: sizes, the h tile, the attention weights of a tile's rows, and the
// per-thread scratch. A tile's rows are ordered graph-major: row r = gl * ne + (e - e0)
// for local graph gl in [0, ng) and edge e in [e0, e1), ne = e1 - e0.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>

#ifdef RSTG_WITH_OPENMP
#include <omp.h>
#endif

#include "cpu/ma_gemm.h"
#include "cpu/ma_plan.h"
#include "message_attention_args.h"

namespace rstg::cpu {

struct Dims {
  int64_t G, N, Hd, A, D, E, heads;
  double scale;
  bool has_w2;
  int64_t Dh() const { return D / heads; }  // message slice per head
  int64_t Ah() const { return A / heads; }  // query/key slice per head
};

// 64-byte aligned scratch, freed on scope exit. Not initialised: the kernels write every
// element they read, and the few accumulators (dW2/db2 partials, slot buffers) are zeroed
// by the thread that uses them, inside the parallel region (first touch on its own core,
// and no serial memset of megabytes before the threads start).
template <typename T>
struct Scratch {
  T* p = nullptr;
  int64_t n = 0;
  explicit Scratch(int64_t count) : n(count) {
    const size_t bytes = size_t(round_up(std::max<int64_t>(count, 1) * int64_t(sizeof(T)), 64));
    p = static_cast<T*>(std::aligned_alloc(64, bytes));
    if (!p) throw std::bad_alloc();
  }
  ~Scratch() { std::free(p); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  T* get() const { return p; }
  void zero() { std::fill(p, p + n, T(0)); }
};

// Non-finite values follow PyTorch (docs/cpu_backend.md, "NaN and infinity"): relu(nan) =
// nan, a ReLU passes its gradient unless its output is <= 0 (so a NaN output passes it, as
// torch's threshold_backward does), and a running max keeps a NaN. Written as compares that
// are false for NaN on the side that must keep it; `v > 0 ? v : 0` (or std::max(0, v),
// fmax) returned 0 for NaN and hid a diverging run. Each still compiles to one vector
// compare and blend (or max with the NaN operand second).
template <typename T>
inline T relu(T v) {
  return v < T(0) ? T(0) : v;
}
// The gradient g through a ReLU whose output was `out`.
template <typename T>
inline T relu_grad(T out, T g) {
  return out <= T(0) ? T(0) : g;
}
// max(m, v) that returns NaN once either is NaN (torch.amax; std::max(m, v) dropped a NaN v).
template <typename T>
inline T max_keep_nan(T m, T v) {
  return (m < v || v != v) ? v : m;
}

// <a, b> over n elements with four vector accumulators: the compiler does not vectorise a
// floating-point reduction by itself (it would reorder the sum), and a scalar chain of
// A = 512 dependent FMAs per score cost more than the rest of the epilogue together. The
// order is fixed, so results stay deterministic.
template <typename T>
inline T dot(const T* a, const T* b, int64_t n) {
  constexpr int L = kLanes<T>;
  Vec<T> s0{}, s1{}, s2{}, s3{};
  int64_t k = 0;
  for (; k + 4 * L <= n; k += 4 * L) {
    s0 += vload(a + k) * vload(b + k);
    s1 += vload(a + k + L) * vload(b + k + L);
    s2 += vload(a + k + 2 * L) * vload(b + k + 2 * L);
    s3 += vload(a + k + 3 * L) * vload(b + k + 3 * L);
  }
  for (; k + L <= n; k += L) s0 += vload(a + k) * vload(b + k);
  const Vec<T> v = (s0 + s1) + (s2 + s3);
  T s = T(0);
  for (int l = 0; l < L; ++l) s += v[l];
  for (; k < n; ++k) s += a[k] * b[k];
  return s;
}

// Prefetches the n elements at p into L1: the next gathered source row is requested while
// the current one is processed (rows are 1-2 KB, scattered over an L3-sized tensor).
template <typename T>
inline void prefetch_row(const T* p, int64_t n) {
  for (int64_t k = 0; k < n; k += 64 / int64_t(sizeof(T))) __builtin_prefetch(p + k);
}

// h[r, :Hd] = relu(S[g, j] + R[g, dst]) for the tile's rows, zero in columns Hd..ldh;
// rows M..Mp are zeroed (the products run on whole micro-tiles of rows).
template <typename T>
void build_h(const Dims& d, const Tile& t, const int64_t* indices, const T* S, const T* R,
             T* h, int64_t ldh, int64_t Mp) {
  const int64_t ne = t.e1 - t.e0;
  for (int64_t gl = 0; gl < t.ng; ++gl) {
    const int64_t g = t.g0 + gl;
    const T* Ri = R + (g * d.N + t.dst) * d.Hd;
    for (int64_t e = 0; e < ne; ++e) {
      const T* Sj = S + (g * d.N + indices[t.e0 + e]) * d.Hd;
      if (e + 1 < ne) prefetch_row(S + (g * d.N + indices[t.e0 + e + 1]) * d.Hd, d.Hd);
      T* hr = h + (gl * ne + e) * ldh;
      for (int64_t k = 0; k < d.Hd; ++k) {
        hr[k] = relu(Sj[k] + Ri[k]);
      }
      for (int64_t k = d.Hd; k < ldh; ++k) hr[k] = T(0);
    }
  }
  for (int64_t r = t.ng * ne; r < Mp; ++r)
    for (int64_t k = 0; k < ldh; ++k) h[r * ldh + k] = T(0);
}

// The tile's attention weights, rows graph-major, copied out of the weights of every edge
// (a_all [G, E, heads], from a per-row pass: row_softmax or row_weights).
template <typename T>
void tile_weights(const Dims& d, const Tile& t, const T* a_all, T* a) {
  const int64_t ne = t.e1 - t.e0;
  for (int64_t gl = 0; gl < t.ng; ++gl)
    std::copy_n(a_all + ((t.g0 + gl) * d.E + t.e0) * d.heads, ne * d.heads, a + gl * ne * d.heads);
}

// What every tile starts from: h (rows M..Mt zeroed, see build_h) and the tile's attention
// weights copied out of a_all. Returns M, the tile's rows.
template <typename T>
int64_t load_tile(const Dims& d, const Tile& t, const int64_t* indices, const T* S, const T* R,
                  const T* a_all, T* h, int64_t ldh, T* a) {
  const int64_t M = t.ng * (t.e1 - t.e0);
  build_h(d, t, indices, S, R, h, ldh, round_up(M, kMR));
  tile_weights(d, t, a_all, a);
  return M;
}

// Weights of one softmax row with lse known (the backward): a[e * heads + c] =
// exp(scale <Q_i, K_j>_c - lse[c]) for the deg edges of destination dst of graph g. A pass
// over rows reads each graph's K rows while they are cached, where a per-tile gather would
// fetch them across a whole graph block.
template <typename T>
void row_weights(const Dims& d, int64_t g, int64_t dst, const int64_t* indptr,
                 const int64_t* indices, const T* Q, const T* K, const T* lse, T* a) {
  const int64_t e0 = indptr[dst], deg = indptr[dst + 1] - e0, Ah = d.Ah();
  const T scale = T(d.scale);
  const T* Qi = Q + (g * d.N + dst) * d.A;
  for (int64_t e = 0; e < deg; ++e) {
    const T* Kj = K + (g * d.N + indices[e0 + e]) * d.A;
    for (int64_t c = 0; c < d.heads; ++c)
      a[e * d.heads + c] = std::exp(scale * dot(Qi + c * Ah, Kj + c * Ah, Ah) - lse[c]);
  }
}

// One softmax row (destination dst of graph g): writes lse[c] (-inf when it has no sources)
// and the row's attention weights a[e * heads + c] = exp(s_e,c - max_c) / sum_c for its deg
// edges (normalised by their sum; see below).
template <typename T>
void row_softmax(const Dims& d, int64_t g, int64_t dst, const int64_t* indptr,
                 const int64_t* indices, const T* Q, const T* K, T* a, T* lse) {
  const int64_t e0 = indptr[dst], deg = indptr[dst + 1] - e0, Ah = d.Ah();
  const T scale = T(d.scale);
  const T* Qi = Q + (g * d.N + dst) * d.A;
  for (int64_t e = 0; e < deg; ++e) {
    const T* Kj = K + (g * d.N + indices[e0 + e]) * d.A;
    if (e + 1 < deg) prefetch_row(K + (g * d.N + indices[e0 + e + 1]) * d.A, d.A);
    for (int64_t c = 0; c < d.heads; ++c)
      a[e * d.heads + c] = scale * dot(Qi + c * Ah, Kj + c * Ah, Ah);
  }
  for (int64_t c = 0; c < d.heads; ++c) {
    T mx = -std::numeric_limits<T>::infinity();
    for (int64_t e = 0; e < deg; ++e) mx = max_keep_nan(mx, a[e * d.heads + c]);
    if (deg == 0) {
      lse[c] = mx;
      continue;
    }
    T sum = T(0);
    for (int64_t e = 0; e < deg; ++e) {
      a[e * d.heads + c] = std::exp(a[e * d.heads + c] - mx);
      sum += a[e * d.heads + c];
    }
    lse[c] = mx + std::log(sum);
    // Normalised by the sum, not as exp(s - lse): lse carries an absolute rounding error of
    // ulp(|lse|), so with large scores (|s| ~ 50) the weights exp(s - lse) summed to 1 + 3e-6
    // and the backward's ds = a (<dO, m> - <dO, O>) lost that much of <dO, m> to cancellation
    // (float32 dQ/dK several times the tolerance rule where they are near zero, e.g. duplicate
    // edges; found by fuzzing). These weights sum to 1 to a few ulp; the backward's
    // exp(s - lse) differ from them by one common factor per row, a relative error of ds.
    const T inv = T(1) / sum;
    for (int64_t e = 0; e < deg; ++e) a[e * d.heads + c] *= inv;
  }
}

// dst[k] += src[k]; one vectorisable loop used by every reduction.
template <typename T>
inline void add_into(T* __restrict dst, const T* __restrict src, int64_t n) {
  for (int64_t k = 0; k < n; ++k) dst[k] += src[k];
}

// This thread's index inside an OpenMP parallel region; 0 without OpenMP.
inline int thread_id() {
#ifdef RSTG_WITH_OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// Threads in the current team; 1 without OpenMP. It can be fewer than the kernels asked
// for (a call from inside another parallel region, OMP_THREAD_LIMIT, OMP_DYNAMIC), so the
// kernels deal the planned per-thread runs out over the team (for (v = tid; v < planned;
// v += team_size())) instead of assuming one thread per run.
inline int team_size() {
#ifdef RSTG_WITH_OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

// Waits for the whole team (an orphaned barrier: call it inside the kernels' parallel region).
inline void team_barrier() {
#ifdef RSTG_WITH_OPENMP
#pragma omp barrier
#endif
}

// fn(run, tile) for every tile of the planned runs this thread takes: runs tid, tid + team,
// ... of `planned` (one run per thread unless the team is smaller than planned).
template <typename Fn>
void for_each_tile_of_thread(const Plan& plan, int planned, Fn&& fn) {
  for (int v = thread_id(); v < planned; v += team_size())
    for (int64_t k = plan.thread_begin[v]; k < plan.thread_begin[v + 1]; ++k) fn(v, plan.tiles[k]);
}

// The thread count the kernels run with; 1 without OpenMP.
inline int clamp_threads(int threads) {
#ifdef RSTG_WITH_OPENMP
  return threads < 1 ? 1 : threads;
#else
  (void)threads;
  return 1;
#endif
}

// The sizes of an entry point's arguments, checked where the kernels rely on them: heads
// divides A and D (the per-head slices Ah = A / heads and Dh = D / heads cover every column;
// otherwise the backward leaves the last D % heads columns of its dh scratch unwritten and
// scatters that uninitialised memory into dS and dR), D == Hd without W2 (dh is D wide, dS
// and dR Hd), and E is the graph's (indptr[N]). The Python op checks the same
// (rstg_fast/ops/_checks.py); this guards direct calls of the entry points.
inline Dims dims_of(const MaArgs& a) {
  if (a.heads < 1 || a.A % a.heads || a.D % a.heads)
    throw std::invalid_argument("message_attention cpu: heads must divide A and D, got heads = " +
                                std::to_string(a.heads) + ", A = " + std::to_string(a.A) +
                                ", D = " + std::to_string(a.D));
  if (!a.has_w2() && a.D != a.Hd)
    throw std::invalid_argument("message_attention cpu: without W2, D must equal Hd, got D = " +
                                std::to_string(a.D) + ", Hd = " + std::to_string(a.Hd));
  if (a.E != a.indptr[a.N])
    throw std::invalid_argument("message_attention cpu: E = " + std::to_string(a.E) +
                                " but indptr[N] = " + std::to_string(a.indptr[a.N]));
  return Dims{a.G, a.N, a.Hd, a.A, a.D, a.E, a.heads, a.scale, a.has_w2()};
}

// fn(T{}) for the element type named by dtype (float32 or float64).
template <typename Fn>
void dispatch_dtype(int64_t dtype, Fn&& fn) {
  if (dtype == kMaFloat32)
    fn(float(0));
  else if (dtype == kMaFloat64)
    fn(double(0));
  else
    throw std::invalid_argument("message_attention cpu: dtype code must be 0 (float32) or 3 "
                                "(float64), got " + std::to_string(dtype));
}

}  // namespace rstg::cpu
