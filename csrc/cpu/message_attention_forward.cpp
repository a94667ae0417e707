// Forward of message_attention on CPU (docs/design.md section 2).
//
// Two phases in one parallel region:
//  1. score pass, parallel over the G * N softmax rows: lse[g, i, c] and the attention
//     weights a = exp(s - max) / sum of every edge (G * E * heads scalars, E * A work: cheap);
//  2. message pass over the tiles of the plan (ma_plan.h): h = relu(S_j + R_i) tile,
//     z = h @ W2^T with the packed-panel micro-kernel, then the epilogue
//     O[g, i] += a * relu(z + b2), accumulated in edge order.
// Knowing lse first makes every tile's weights final, so the pieces of a split hub row just
// add up (no rescaling), and nothing of size E x D is ever stored.
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
struct ForwardScratch {
  Scratch<T> h, z, a;
  // Mp rows of a tile; Hdp, Dp: Hd, D rounded up to whole vectors (columns and row strides).
  ForwardScratch(int64_t Mp, int64_t Hdp, int64_t Dp, int64_t heads, bool has_w2)
      : h(Mp * Hdp), z(has_w2 ? Mp * Dp : 0), a(Mp * heads) {}
};

// O rows of one tile: O[g, dst] += sum_e a[r, c] * msg[r, c-slice] for its graphs.
template <typename T>
void accumulate_messages(const Dims& d, const Tile& t, const T* msg, int64_t ldm, const T* b2,
                         const T* a, T* O_block) {
  const int64_t ne = t.e1 - t.e0, Dh = d.Dh();
  for (int64_t gl = 0; gl < t.ng; ++gl) {
    T* __restrict out = O_block + (gl * d.N + t.dst) * d.D;
    for (int64_t e = 0; e < ne; ++e) {
      const int64_t r = gl * ne + e;
      const T* __restrict m = msg + r * ldm;
      for (int64_t c = 0; c < d.heads; ++c) {
        const T w = a[r * d.heads + c];
        const int64_t k0 = c * Dh, k1 = k0 + Dh;
        if (b2) {
          for (int64_t k = k0; k < k1; ++k) out[k] += w * relu(m[k] + b2[k]);
        } else {
          for (int64_t k = k0; k < k1; ++k) out[k] += w * m[k];
        }
      }
    }
  }
}

template <typename T>
void forward(const Dims& d, const T* S, const T* R, const T* Q, const T* K, const T* W2,
             const T* b2, const int64_t* indptr, const int64_t* indices, T* O, T* lse,
             int threads) {
  // Columns padded to whole vectors (the micro-kernel's narrowest panel).
  const int64_t Hdp = round_up(d.Hd, kLanes<T>), Dp = round_up(d.D, kLanes<T>);
  const double row_cost = double(d.Hd) * double(d.has_w2 ? d.D : 1) + double(d.A + d.D);
  Plan plan = make_plan(indptr, d.N, d.G, threads, row_cost, double(d.D + d.A) * 8.0, kMR, kForwardTileRows);
  const int64_t Mp = round_up(std::max<int64_t>(plan.max_rows, 1), kMR);

  Scratch<T> w2p(d.has_w2 ? Dp * d.Hd : 0);  // W2^T in panels: K = Hd, width D
  Scratch<T> weights(d.G * d.E * d.heads);   // a[g, e, c] of every edge, from the score pass
  std::vector<std::unique_ptr<ForwardScratch<T>>> scratch;
  for (int t = 0; t < threads; ++t)
    scratch.push_back(std::make_unique<ForwardScratch<T>>(Mp, Hdp, Dp, d.heads, d.has_w2));
  BlockOutputs<T> outs(plan, threads, {{O, d.N * d.D}});

#ifdef RSTG_WITH_OPENMP
#pragma omp parallel num_threads(threads)
#endif
  {
    const int tid = cpu::thread_id(), team = cpu::team_size();
    if (d.has_w2) {
      const int64_t panels = num_panels<T>(d.D);
#ifdef RSTG_WITH_OPENMP
#pragma omp for schedule(static) nowait
#endif
      for (int64_t p = 0; p < panels; ++p) pack_panel(W2, d.D, d.Hd, true, p, w2p.get());
    }
    for (int v = tid; v < threads; v += team) outs.zero_slots(v);  // planned runs (ma_tile.h)
#ifdef RSTG_WITH_OPENMP
#pragma omp for schedule(static) nowait
#endif
    for (int64_t row = 0; row < d.G * d.N; ++row) {
      for (int64_t k = 0; k < d.D; ++k) O[row * d.D + k] = T(0);
      const int64_t g = row / d.N, i = row % d.N;
      row_softmax(d, g, i, indptr, indices, Q, K, weights.get() + (g * d.E + indptr[i]) * d.heads,
                  lse + row * d.heads);
    }
    team_barrier();
    T* target[1];
    for_each_tile_of_thread(plan, threads, [&](int v, const Tile& t) {
      ForwardScratch<T>& ws = *scratch[v];
      const int64_t M = load_tile(d, t, indices, S, R, weights.get(), ws.h.get(), Hdp, ws.a.get());
      const int64_t Mt = round_up(M, kMR);
      outs.targets(v, t.block, target);
      T* O_block = target[0];
      if (d.has_w2) {
        gemm<T, false>(Mt, Dp, d.Hd, ws.h.get(), Hdp, w2p.get(), true, 0, ws.z.get(), Dp);
        accumulate_messages(d, t, ws.z.get(), Dp, b2, ws.a.get(), O_block);
      } else {
        accumulate_messages<T>(d, t, ws.h.get(), Hdp, nullptr, ws.a.get(), O_block);
      }
    });
    team_barrier();
    outs.reduce_shared(d.G);
  }
}

}  // namespace
}  // namespace rstg::cpu

namespace rstg {

void message_attention_forward_cpu(const MaArgs& a) {
  const cpu::Dims d = cpu::dims_of(a);
  const int threads = cpu::clamp_threads(int(a.threads));
  cpu::dispatch_dtype(a.dtype, [&](auto zero) {
    using T = decltype(zero);
    auto c = [](const void* p) { return static_cast<const T*>(p); };
    cpu::forward<T>(d, c(a.S), c(a.R), c(a.Q), c(a.K), c(a.W2), c(a.b2), a.indptr, a.indices,
                    static_cast<T*>(a.O), static_cast<T*>(a.lse), threads);
  });
}

}  // namespace rstg
