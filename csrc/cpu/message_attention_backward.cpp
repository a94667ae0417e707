// Backward of message_attention on CPU (docs/design.md section 7, "Backward dataflow").
//
// Per tile of the plan (ma_plan.h), recomputing instead of storing anything per edge:
//   h = relu(S_j + R_i), z = h @ W2^T, m = relu(z + b2), a = exp(s - lse)
//   Delta_c = <dO_i, O_i>_c,  ds = a * (<dO_i, m>_c - Delta_c)
//   dz = a * dO_i * [m > 0],  dh = (dz @ W2) * [h > 0]
//   dR_i += dh, dS_j += dh
//   dW2 += dz^T @ h, db2 += colsum(dz)      (per-thread partials)
// and after the tile loop, per graph, from the ds of every edge (G x E x heads scalars):
//   dQ_i = scale sum_j ds K_j, dK_j = scale sum_i ds Q_i.
// The three products (z, dh, dW2) run on the packed-panel micro-kernel. dS scatters to
// sources inside a graph block: blocks owned by one thread are written in place, the few
// shared ones through per-thread slots (ma_blocks.h). dW2/db2 are summed over threads in
// thread order at the end. Everything is deterministic for a fixed thread count.
#include <algorithm>
#include <memory>
#include <vector>

#include "cpu/ma_blocks.h"
#include "cpu/ma_gemm.h"
#include "cpu/ma_plan.h"
#include "cpu/ma_tile.h"
#include "cpu/message_attention_cpu.h"

namespace rstg::cpu {
namespace {

template <typename T>
struct BackwardScratch {
  Scratch<T> h, zdz, a, delta, dzb, dh, dW2, db2, db2_tile;
  // Mp rows of a tile; Hdp: Hd rounded up to whole vectors (columns and row stride of h, dh
  // and the dW2 partial); Dm: D rounded up to whole vectors and to kMR (dW2's rows; the row
  // stride of zdz, which holds z = h @ W2^T in its first D-in-vectors columns and then, row
  // by row in place, dz with zeros up to Dm).
  BackwardScratch(int64_t Mp, int64_t Hdp, int64_t Dm, int64_t heads, int64_t gpb, bool w2)
      : h(Mp * Hdp), zdz(w2 ? Mp * Dm : 0), a(Mp * heads), delta(gpb * heads),
        dzb(w2 ? Mp * Dm : 0), dh(Mp * Hdp), dW2(w2 ? Dm * Hdp : 0), db2(w2 ? Dm : 0),
        db2_tile(w2 ? Dm : 0) {}
};

// Softmax and message gradients of a tile's rows. msg (ldm) holds z = h @ W2^T when b2 is
// given, or m itself (one layer). Writes ds of the tile's edges into ds_all [G, E, heads], and either
//  - two layers: dz over z in place (row r: m = relu(z + b2) is read, then replaced by
//    dz = a dO_i [m > 0], zero in columns D..Dp; its column sums added to db2), and dz^T in
//    kMR-row blocks for the dW2 product (dzb, K = M rows: element (d, r) at
//    (d / kMR) * kMR * M + r * kMR + d % kMR); or
//  - one layer: dh (before the first layer's relu mask).
template <typename T>
void row_gradients(const Dims& d, const Tile& t, const T* dO, const T* O, T* msg, int64_t ldm,
                   const T* b2, const T* a, T* delta, T* ds_all, int64_t Dp, T* dzb, T* db2, T* dh,
                   int64_t ldh) {
  const int64_t ne = t.e1 - t.e0, Dh = d.Dh();
  const bool two_layers = b2 != nullptr;
  for (int64_t gl = 0; gl < t.ng; ++gl) {
    const int64_t row = (t.g0 + gl) * d.N + t.dst;
    const T* dOi = dO + row * d.D;
    for (int64_t c = 0; c < d.heads; ++c) delta[c] = dot(dOi + c * Dh, O + row * d.D + c * Dh, Dh);
    for (int64_t e = 0; e < ne; ++e) {
      const int64_t r = gl * ne + e;
      T* ds = ds_all + ((t.g0 + gl) * d.E + t.e0 + e) * d.heads;
      T* m = msg + r * ldm;  // not __restrict: with two layers `out` is m itself
      if (two_layers) {
        for (int64_t k = 0; k < d.D; ++k) m[k] = relu(m[k] + b2[k]);
      }
      // Per head: ds from this head's slice of m, then the slice becomes the gradient.
      T* out = two_layers ? m : dh + r * ldh;
      for (int64_t c = 0; c < d.heads; ++c) {
        const T w = a[r * d.heads + c];
        const int64_t k0 = c * Dh, k1 = k0 + Dh;
        ds[c] = w * (dot(dOi + k0, m + k0, Dh) - delta[c]);
        for (int64_t k = k0; k < k1; ++k) out[k] = relu_grad(m[k], w * dOi[k]);
      }
      if (two_layers) {
        for (int64_t k = d.D; k < Dp; ++k) out[k] = T(0);
        add_into(db2, out, d.D);
        const int64_t M = t.ng * ne;
        for (int64_t k = 0; k < Dp; k += kMR)
          for (int q = 0; q < kMR; ++q) dzb[k * M + r * kMR + q] = out[k + q];
      }
    }
  }
}

// dR_i and dS_j of one tile, from dh through the first layer's relu (dh * [h > 0]), into
// the block's targets.
template <typename T>
void scatter_gradients(const Dims& d, const Tile& t, const int64_t* indices, const T* h,
                       const T* dh, int64_t ldh, T* const* tg) {
  T *dS = tg[0], *dR = tg[1];  // block targets, graph g0 first
  const int64_t ne = t.e1 - t.e0;
  for (int64_t gl = 0; gl < t.ng; ++gl) {
    T* __restrict dRi = dR + (gl * d.N + t.dst) * d.Hd;
    for (int64_t e = 0; e < ne; ++e) {
      const int64_t r = gl * ne + e, j = indices[t.e0 + e];
      const T* __restrict dhr = dh + r * ldh;
      const T* __restrict hr = h + r * ldh;
      T* __restrict dSj = dS + (gl * d.N + j) * d.Hd;
      for (int64_t k = 0; k < d.Hd; ++k) {
        const T v = relu_grad(hr[k], dhr[k]);
        dRi[k] += v;
        dSj[k] += v;
      }
    }
  }
}

// dQ and dK of graph g from the ds of its edges: dQ_i = scale sum_e ds_e K_src(e) and
// dK_j = scale sum of ds_e Q_dst(e) over the edges leaving j. One thread per graph, edges
// in CSR order: deterministic for any thread count, and the graph's Q, K, dQ, dK rows
// (N x A each) stay in L1/L2. (Inside the tile loop, dK_j was a scatter across a whole
// graph block: moving it here took paper forward+backward from 68.5 to 66 ms.)
template <typename T>
void query_key_gradients(const Dims& d, int64_t g, const int64_t* indptr, const int64_t* indices,
                         const T* Q, const T* K, const T* ds_all, T* dQ, T* dK) {
  const int64_t Ah = d.Ah(), rows = d.N * d.A;
  const T scale = T(d.scale);
  const T* Qg = Q + g * rows;
  const T* Kg = K + g * rows;
  T* dQg = dQ + g * rows;
  T* dKg = dK + g * rows;
  std::fill(dQg, dQg + rows, T(0));
  std::fill(dKg, dKg + rows, T(0));
  for (int64_t i = 0; i < d.N; ++i) {
    T* __restrict dQi = dQg + i * d.A;
    const T* __restrict Qi = Qg + i * d.A;
    for (int64_t e = indptr[i]; e < indptr[i + 1]; ++e) {
      const int64_t j = indices[e];
      const T* __restrict Kj = Kg + j * d.A;
      T* __restrict dKj = dKg + j * d.A;
      for (int64_t c = 0; c < d.heads; ++c) {
        const T w = scale * ds_all[(g * d.E + e) * d.heads + c];
        for (int64_t k = c * Ah; k < (c + 1) * Ah; ++k) {
          dQi[k] += w * Kj[k];
          dKj[k] += w * Qi[k];
        }
      }
    }
  }
}

template <typename T>
void backward(const Dims& d, const T* dO, const T* S, const T* R, const T* Q, const T* K,
              const T* W2, const T* b2, const int64_t* indptr, const int64_t* indices,
              const T* O, const T* lse, T* dS, T* dR, T* dQ, T* dK, T* dW2, T* db2,
              int threads) {
  const bool w2 = d.has_w2;
  // Dv: D in whole vectors, the width of the packed W2^T panels and so the only valid column
  // count of the z product. Dp: Dv rounded up to kMR as well (dW2's rows come in micro-tile
  // blocks), the row stride of z/dz. The two differ when kMR is not a multiple of the vector
  // width (AVX2 and SSE builds: kMR = 6): asking the z product for Dp columns there read the
  // last, narrower panel as a full one (wrong z, so wrong dS, dR, dQ, dK, dW2 and db2).
  const int64_t Hdp = round_up(d.Hd, kLanes<T>), Dv = round_up(d.D, kLanes<T>), Dp = round_up(Dv, kMR);
  const double row_cost = double(d.Hd) * double(w2 ? 3 * d.D : 1) + double(2 * d.A + 3 * d.D);
  Plan plan = make_plan(indptr, d.N, d.G, threads, row_cost, double(d.D + d.A) * 8.0, kMR, kBackwardTileRows);
  const int64_t Mp = round_up(std::max<int64_t>(plan.max_rows, 1), kMR);

  Scratch<T> w2t(w2 ? Dv * d.Hd : 0);  // W2^T panels (K = Hd): z = h @ W2^T
  Scratch<T> w2n(w2 ? Hdp * d.D : 0);  // W2 panels (K = D): dh = dz @ W2
  std::vector<std::unique_ptr<BackwardScratch<T>>> scratch;
  for (int t = 0; t < threads; ++t)
    scratch.push_back(std::make_unique<BackwardScratch<T>>(Mp, Hdp, Dp, d.heads, plan.graphs_per_block, w2));
  Scratch<T> a_all(d.G * d.E * d.heads);   // attention weight of every edge (row pass)
  Scratch<T> ds_all(d.G * d.E * d.heads);  // ds of every edge, for the dQ/dK pass
  BlockOutputs<T> outs(plan, threads, {{dS, d.N * d.Hd}, {dR, d.N * d.Hd}});

#ifdef RSTG_WITH_OPENMP
#pragma omp parallel num_threads(threads)
#endif
  {
    const int tid = cpu::thread_id(), team = cpu::team_size();
    if (w2) {
      const int64_t pt = num_panels<T>(d.D), pn = num_panels<T>(d.Hd);
#ifdef RSTG_WITH_OPENMP
#pragma omp for schedule(static) nowait
#endif
      for (int64_t p = 0; p < pt + pn; ++p) {
        if (p < pt)
          pack_panel(W2, d.D, d.Hd, true, p, w2t.get());
        else
          pack_panel(W2, d.D, d.Hd, false, p - pt, w2n.get());
      }
    }
    for (int v = tid; v < threads; v += team) {  // planned runs: one each unless the team is smaller
      if (w2) {
        scratch[v]->dW2.zero();
        scratch[v]->db2.zero();
      }
      outs.zero_slots(v);
    }
#ifdef RSTG_WITH_OPENMP
#pragma omp for schedule(static) nowait
#endif
    for (int64_t row = 0; row < d.G * d.N; ++row) {
      for (int64_t k = 0; k < d.Hd; ++k) dS[row * d.Hd + k] = dR[row * d.Hd + k] = T(0);
      const int64_t g = row / d.N, i = row % d.N;
      row_weights(d, g, i, indptr, indices, Q, K, lse + row * d.heads,
                  a_all.get() + (g * d.E + indptr[i]) * d.heads);
    }
    team_barrier();
    T* tg[2];
    for_each_tile_of_thread(plan, threads, [&](int v, const Tile& t) {
      BackwardScratch<T>& ws = *scratch[v];
      const int64_t M = load_tile(d, t, indices, S, R, a_all.get(), ws.h.get(), Hdp, ws.a.get());
      const int64_t Mt = round_up(M, kMR);
      outs.targets(v, t.block, tg);
      if (w2) {
        // Rows M..Mt of h are zero, so those of z, and of dz after it, are zero too. Columns
        // Dv..Dp of z are left unwritten; row_gradients zeroes columns D..Dp of dz.
        T* zdz = ws.zdz.get();
        gemm<T, false>(Mt, Dv, d.Hd, ws.h.get(), Hdp, w2t.get(), true, 0, zdz, Dp);
        // db2 summed per tile, then added to the thread's partial (like dW2, see micro_kernel):
        // one float32 chain over all of a thread's rows lost accuracy as G x E grew.
        ws.db2_tile.zero();
        row_gradients(d, t, dO, O, zdz, Dp, b2, ws.a.get(), ws.delta.get(), ds_all.get(), Dp,
                      ws.dzb.get(), ws.db2_tile.get(), ws.dh.get(), Hdp);
        add_into(ws.db2.get(), ws.db2_tile.get(), d.D);
        gemm<T, false>(Mt, Hdp, d.D, zdz, Dp, w2n.get(), true, 0, ws.dh.get(), Hdp);
        gemm<T, true, true>(Dp, Hdp, M, ws.dzb.get(), M, ws.h.get(), false, Hdp, ws.dW2.get(), Hdp);
      } else {
        row_gradients<T>(d, t, dO, O, ws.h.get(), Hdp, nullptr, ws.a.get(), ws.delta.get(),
                         ds_all.get(), Dp, nullptr, nullptr, ws.dh.get(), Hdp);
      }
      scatter_gradients(d, t, indices, ws.h.get(), ws.dh.get(), Hdp, tg);
    });
    team_barrier();
    outs.reduce_shared(d.G);
#ifdef RSTG_WITH_OPENMP
#pragma omp for schedule(static) nowait
#endif
    for (int64_t g = 0; g < d.G; ++g) query_key_gradients(d, g, indptr, indices, Q, K, ds_all.get(), dQ, dK);
    if (w2) {
      // Thread partials summed in thread order: a fixed order for a fixed thread count.
#ifdef RSTG_WITH_OPENMP
#pragma omp for schedule(static) nowait
#endif
      for (int64_t n = 0; n < d.D; ++n) {
        for (int64_t k = 0; k < d.Hd; ++k) {
          T sum = T(0);
          for (int t = 0; t < threads; ++t) sum += scratch[t]->dW2.get()[n * Hdp + k];
          dW2[n * d.Hd + k] = sum;
        }
        T sum = T(0);
        for (int t = 0; t < threads; ++t) sum += scratch[t]->db2.get()[n];
        db2[n] = sum;
      }
    }
  }
}

}  // namespace
}  // namespace rstg::cpu

namespace rstg {

void message_attention_backward_cpu(const MaArgs& a) {
  const cpu::Dims d = cpu::dims_of(a);
  const int threads = cpu::clamp_threads(int(a.threads));
  cpu::dispatch_dtype(a.dtype, [&](auto zero) {
    using T = decltype(zero);
    auto c = [](const void* p) { return static_cast<const T*>(p); };
    auto m = [](void* p) { return static_cast<T*>(p); };
    cpu::backward<T>(d, c(a.dO), c(a.S), c(a.R), c(a.Q), c(a.K), c(a.W2), c(a.b2), a.indptr,
                     a.indices, c(a.O), c(a.lse), m(a.dS), m(a.dR), m(a.dQ), m(a.dK), m(a.dW2),
                     m(a.db2), threads);
  });
}

}  // namespace rstg
