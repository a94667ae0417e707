// Forward of message_attention: O (G, N, D) and lse (G, N, heads).
//
// MaArgs fields read (message_attention_args.h; pointers are device addresses):
//   dtype (float32, float16, bfloat16), G, N, E, Hd, D, A, heads, scale, stream,
//   S, R [G, N, Hd], Q, K [G, N, A], W2 [D, Hd] | null, b2 [D] | null,
//   the destination plan d (see MaPlan), O [G, N, D] (dtype), lse [G, N, heads] (float32),
//   o_part [d.slots, G, D] and lse_part [d.slots, G, heads] (float32; null when d.slots == 0).
//
// One block per task (item, group of kBG graphs). Within a task the softmax is exact: all
// scores of its <= kBG * kChunk rows are computed first (cheap: A-wide dot products), the
// per-(graph, head) max and sum give the item's lse, and the message tiles are then summed
// with final weights into a float32 accumulator in shared memory. An item that is a whole
// row writes O and lse; the items of a split row write partials that merge_kernel combines
// with their lse (flash-decoding style), in a fixed order.
#include "cuda/message_attention_common.cuh"

namespace rstg {
namespace ma {
namespace {

template <typename T, bool kHasW2>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(const T* __restrict__ S,       // [G, N, Hd]
                   const T* __restrict__ R,       // [G, N, Hd]
                   const T* __restrict__ Q,       // [G, N, A]
                   const T* __restrict__ K,       // [G, N, A]
                   const T* __restrict__ W2,      // [D, Hd] (kHasW2)
                   const T* __restrict__ b2,      // [D] (kHasW2)
                   Plan plan,                     // destination-major items
                   T* __restrict__ O,             // [G, N, D]
                   float* __restrict__ lse,       // [G, N, heads]
                   float* __restrict__ o_part,    // [slots, G, D]
                   float* __restrict__ lse_part,  // [slots, G, heads]
                   int G, int N, int Hd, int D, int A, int heads, float scale) {
  RSTG_DYNAMIC_SMEM(smem);
  const Layout L = make_layout(false, sizeof(T), Hd, D, A, heads, kHasW2);
  T* hs = reinterpret_cast<T*>(smem + L.h);               // [TM][ldh]
  T* w2s = reinterpret_cast<T*>(smem + L.w2);             // W2 slice
  float* zs = reinterpret_cast<float*>(smem + L.z);       // [TM][ldz]
  float* oacc = reinterpret_cast<float*>(smem + L.oacc);  // [kBG][D]
  float* sc = reinterpret_cast<float*>(smem + L.sc);      // [kBG * kChunk][heads]
  float* lse_s = reinterpret_cast<float*>(smem + L.lse);  // [kBG][heads]
  const RowInfo ri = row_info(smem, L);

  const int64_t groups = graph_groups(G);
  const int64_t item = blockIdx.x / groups;
  const int g0 = int(blockIdx.x - item * groups) * kBG;
  const int bg = min(kBG, G - g0);
  const int u = plan.item_node[item];
  const int p0 = plan.item_begin[item];
  const int len = plan.item_end[item] - p0;
  const int slot = plan.item_slot[item];
  if (len > kChunk) __trap();  // the host plan guarantees items of at most kChunk edges
  const int rows_total = bg * len;
  const int dh = A / heads, dd = D / heads;
  const int warp = threadIdx.x / 32;

  for (int idx = threadIdx.x; idx < bg * D; idx += blockDim.x) oacc[idx] = 0.f;

  // Scores of every row of the task: one warp per (row, head).
  for (int p = warp; p < rows_total * heads; p += kWarps) {
    const int row = p / heads, c = p - row * heads;
    const int gl = row / len, el = row - gl * len;
    const float score = warp_score(Q, K, g0 + gl, u, plan.other[p0 + el], c, N, A, dh, scale);
    if ((threadIdx.x & 31) == 0) sc[p] = score;
  }
  __syncthreads();

  // Exact softmax of the item per (graph, head); weights replace scores in place.
  for (int p = threadIdx.x; p < bg * heads; p += blockDim.x) {
    const int gl = p / heads, c = p - gl * heads;
    float mx = -INFINITY;
    for (int el = 0; el < len; ++el) mx = max_keep_nan(mx, sc[(gl * len + el) * heads + c]);
    // Every score -inf: a whole row is NaN, the reference's exp(-inf - -inf); one item of a
    // split row weighs 0 instead (lse -inf, weights 0, like the reference's edges far below
    // the row's max), and the merge decides.
    const bool zero_item = mx == -INFINITY && slot >= 0;
    const float ms = zero_item ? 0.f : mx;
    float sum = 0.f;
    for (int el = 0; el < len; ++el) sum += expf(sc[(gl * len + el) * heads + c] - ms);
    const float l = len > 0 ? ms + logf(sum) : -INFINITY;
    const float lw = zero_item ? 0.f : l;
    for (int el = 0; el < len; ++el) {
      float* s = &sc[(gl * len + el) * heads + c];
      *s = expf(*s - lw);
    }
    lse_s[p] = l;
  }
  __syncthreads();

  // Column ownership in the epilogue: thread (c, parity) adds the rows of graphs with that
  // parity, so no two threads touch the same accumulator and the sum order is fixed.
  const int col_lane = threadIdx.x & (kTN - 1);
  const int parity = threadIdx.x / kTN;
  for (int t0 = 0; t0 < rows_total; t0 += L.tm) {
    fill_rows(ri, L.tm, t0, rows_total, len, g0, u, p0, plan.other, false);
    __syncthreads();
    build_h(hs, L, ri, S, R, N, Hd);
    __syncthreads();
    if constexpr (kHasW2) {
      for (int n0 = 0; n0 < D; n0 += kTN) {
        mma_h_w2t(hs, w2s, zs, L, W2, Hd, D, n0);
        __syncthreads();
        const int col = n0 + col_lane;
        if (col < D) {
          const int head = col / dd;
          const float bias = to_f(b2[col]);
          for (int r = 0; r < L.tm; ++r) {
            const int gl = ri.gl[r];
            if (gl < 0 || (gl & 1) != parity) continue;
            const float m = relu_f(zs[r * L.ldz + col_lane] + bias);
            oacc[gl * D + col] += sc[(t0 + r) * heads + head] * m;
          }
        }
        __syncthreads();
      }
    } else {
      for (int col = col_lane; col < D; col += kTN) {
        const int head = col / dd;
        for (int r = 0; r < L.tm; ++r) {
          const int gl = ri.gl[r];
          if (gl < 0 || (gl & 1) != parity) continue;
          oacc[gl * D + col] += sc[(t0 + r) * heads + head] * to_f(hs[r * L.ldh + col]);
        }
      }
      __syncthreads();
    }
  }
  __syncthreads();

  store_node_rows(oacc, bg, D, g0, u, N, G, slot, O, o_part);
  store_node_rows(lse_s, bg, heads, g0, u, N, G, slot, lse, lse_part);
}

// Combines the items of split rows: one block per (split node, graph).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    merge_kernel(Plan plan,
                 const float* __restrict__ o_part,    // [slots, G, D]
                 const float* __restrict__ lse_part,  // [slots, G, heads]
                 T* __restrict__ O,                   // [G, N, D]
                 float* __restrict__ lse,             // [G, N, heads]
                 int G, int N, int D, int heads) {
  const int64_t s = blockIdx.x / G;
  const int64_t g = blockIdx.x - s * G;
  const int u = plan.split_node[s];
  const int first = plan.split_ptr[s], last = plan.split_ptr[s + 1];
  const int dd = D / heads;
  for (int col = threadIdx.x; col < D + heads; col += blockDim.x) {
    const int c = col < D ? col / dd : col - D;
    float mx = -INFINITY;
    for (int q = first; q < last; ++q)
      mx = max_keep_nan(mx, lse_part[((int64_t)q * G + g) * heads + c]);
    // mx = -inf: every score of the row was -inf, and exp(-inf - -inf) = NaN (the reference).
    float sum = 0.f;
    for (int q = first; q < last; ++q) sum += expf(lse_part[((int64_t)q * G + g) * heads + c] - mx);
    const float total = mx + logf(sum);
    if (col >= D) {
      lse[(g * N + u) * heads + c] = total;
      continue;
    }
    float acc = 0.f;
    for (int q = first; q < last; ++q)
      acc += expf(lse_part[((int64_t)q * G + g) * heads + c] - total) *
             o_part[((int64_t)q * G + g) * D + col];
    O[(g * N + u) * D + col] = from_f<T>(acc);
  }
}

template <typename T, bool kHasW2>
void launch_forward(const MaArgs& in, const Dims& d, float scale, cudaStream_t stream) {
  const Plan& plan = in.d;
  const Layout L =
      make_layout(false, sizeof(T), int(d.Hd), int(d.D), int(d.A), int(d.heads), kHasW2);
  const int64_t blocks = plan.items * graph_groups(d.G);
  if (blocks >= 0x7fffffff)
    throw std::invalid_argument(
        "message_attention cuda backend: too many tasks (items x graph groups)");
  auto kernel = forward_kernel<T, kHasW2>;
  prepare_smem(kernel, L.total, "forward_kernel");
  auto c = [](const void* p) { return static_cast<const T*>(p); };
  const T* W2 = kHasW2 ? c(in.W2) : nullptr;
  const T* b2 = kHasW2 ? c(in.b2) : nullptr;
  T* O = static_cast<T*>(in.O);
  float* lse = static_cast<float*>(in.lse);
  float* o_part = in.o_part;
  float* lse_part = in.lse_part;
  RSTG_LAUNCH(kernel, unsigned(blocks), kThreads, L.total, stream)(
      c(in.S), c(in.R), c(in.Q), c(in.K), W2, b2, plan, O, lse, o_part, lse_part, int(d.G),
      int(d.N), int(d.Hd), int(d.D), int(d.A), int(d.heads), scale);
  RSTG_CUDA_CHECK_LAUNCH("message_attention forward_kernel");
  if (plan.splits > 0) {
    RSTG_LAUNCH(merge_kernel<T>, unsigned(plan.splits * d.G), kThreads, 0, stream)(
        plan, o_part, lse_part, O, lse, int(d.G), int(d.N), int(d.D), int(d.heads));
    RSTG_CUDA_CHECK_LAUNCH("message_attention merge_kernel");
  }
}

}  // namespace
}  // namespace ma

void message_attention_forward_cuda(const MaArgs& args) {
  ma::dispatch_entry(args, "forward", [&](auto tag, auto has_w2, const ma::Dims& d,
                                          cudaStream_t stream) {
    ma::launch_forward<typename decltype(tag)::type, decltype(has_w2)::value>(
        args, d, float(args.scale), stream);
  });
}

}  // namespace rstg
