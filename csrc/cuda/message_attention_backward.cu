// Backward of message_attention: dS, dR [G, N, Hd], dQ, dK [G, N, A], dW2 [D, Hd], db2 [D].
//
// MaArgs fields read (message_attention_args.h; pointers are device addresses), beyond the
// forward's dtype, G, N, E, Hd, D, A, heads, scale, stream, S, R, Q, K, W2, b2 and plan d:
//   dO, O [G, N, D] (dtype), lse [G, N, heads] (float32), delta [G, N, heads] (float32 scratch),
//   dS, dR, dQ, dK, dW2, db2 (dtype outputs; dW2/db2 null without W2),
//   deterministic (0/1); when 1, the source plan s (over the CSR transposed by source) and
//   parts s_part_h [s.slots, G, Hd], s_part_qk [s.slots, G, A];
//   when 0, acc_dS [G, N, Hd] and acc_dK [G, N, A] (float32, zero-filled by the caller),
//   d_part_h [d.slots, G, Hd], d_part_qk [d.slots, G, A] (float32 partials of split rows),
//   blocks (persistent blocks P), w2_slots [P, pad32(D), pad32(Hd)], b2_slots [P, pad32(D)]
//   (float32, zero-filled by the caller; null without W2).
//
// Recompute (docs/design.md §7): per row, a = exp(s - lse) with the forward's full-row lse, so the
// items of a split row are independent. Delta = rowsum(dO * O) per head comes first. Each
// task owns its node u: the destination pass (by_source = 0) accumulates dR_u and dQ_u in
// shared memory and, per persistent block, dW2/db2 partials in that block's own global slot
// (reduced in fixed order at the end). dS and dK belong to sources: float32 atomics during
// the destination pass, or (deterministic) a second, source-major pass over the transposed
// CSR that recomputes and owns dS_u and dK_u the same way. No E x D buffer exists.
#include <initializer_list>

#include <string>

#include "cuda/message_attention_common.cuh"

namespace rstg {
namespace ma {
namespace {

template <typename T>
__global__ void __launch_bounds__(kThreads)
    delta_kernel(const T* __restrict__ dO,   // [G, N, D]
                 const T* __restrict__ O,    // [G, N, D]
                 float* __restrict__ delta,  // [G, N, heads]
                 int64_t rows, int D, int heads) {
  const int64_t total = rows * heads;
  const int dd = D / heads;
  for (int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = t / heads;
    const int c = int(t - row * heads);
    const T* a = dO + row * D + (int64_t)c * dd;
    const T* b = O + row * D + (int64_t)c * dd;
    float acc = 0.f;
    for (int x = 0; x < dd; ++x) acc += to_f(a[x]) * to_f(b[x]);
    delta[t] = acc;
  }
}

// zs[TM][kTN] = dzs[TM][pad32(D)] @ W2[:, n0 : n0 + kTN] (columns past Hd are zero).
template <typename T>
__device__ void mma_dz_w2(const T* dzs, T* w2s, float* zs, const Layout& L,
                          const T* __restrict__ W2, int Hd, int D, int n0) {
  constexpr int MF = Traits<T>::kTM / 16;
  const int warp = threadIdx.x / 32;
  FragC<T> acc[MF];
  for (int mf = 0; mf < MF; ++mf) wmma::fill_fragment(acc[mf], 0.f);
  const int dp = pad32(D);
  for (int d0 = 0; d0 < dp; d0 += kTK) {
    for (int idx = threadIdx.x; idx < kTK * kTN; idx += blockDim.x) {
      const int d = idx / kTN, k = idx - d * kTN;
      const int gd = d0 + d, gk = n0 + k;
      w2s[d * L.ldb + k] = (gd < D && gk < Hd) ? W2[(int64_t)gd * Hd + gk] : from_f<T>(0.f);
    }
    __syncthreads();
    for (int ks = 0; ks < kTK; ks += Traits<T>::kK) {
      FragB<T> b;
      wmma::load_matrix_sync(b, w2s + ks * L.ldb + warp * 16, L.ldb);
      for (int mf = 0; mf < MF; ++mf) {
        FragA<T> a;
        FragB<T> bb = b;
        wmma::load_matrix_sync(a, dzs + mf * 16 * L.ldd + d0 + ks, L.ldd);
        mma<T>(acc[mf], a, bb);
      }
    }
    __syncthreads();
  }
  for (int mf = 0; mf < MF; ++mf)
    wmma::store_matrix_sync(zs + mf * 16 * L.ldz + warp * 16, acc[mf], L.ldz, wmma::mem_row_major);
}

// slot[pad32(D)][pad32(Hd)] += dzs^T @ hs over the TM rows of the tile; only this block
// touches its slot, so plain loads and stores (no atomics) keep the sum order fixed.
template <typename T>
__device__ void accumulate_dw2(const T* dzs, const T* hs, const Layout& L, float* __restrict__ slot,
                               float* __restrict__ bslot, int Hd, int D) {
  const int dp = pad32(D), hdp = pad32(Hd);
  const int warp = threadIdx.x / 32;
  const int fk_count = hdp / 16;
  const int frags = (dp / 16) * fk_count;
  for (int f = warp; f < frags; f += kWarps) {
    const int fd = f / fk_count, fk = f - fd * fk_count;
    FragC<T> acc;
    float* c = slot + (int64_t)fd * 16 * hdp + fk * 16;
    wmma::load_matrix_sync(acc, c, hdp, wmma::mem_row_major);
    for (int ks = 0; ks < L.tm; ks += Traits<T>::kK) {
      FragAT<T> a;
      FragB<T> b;
      wmma::load_matrix_sync(a, dzs + ks * L.ldd + fd * 16, L.ldd);
      wmma::load_matrix_sync(b, hs + ks * L.ldh + fk * 16, L.ldh);
      mma<T>(acc, a, b);
    }
    wmma::store_matrix_sync(c, acc, hdp, wmma::mem_row_major);
  }
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float acc = 0.f;
    for (int r = 0; r < L.tm; ++r) acc += to_f(dzs[r * L.ldd + d]);
    bslot[d] += acc;
  }
}

// One persistent block walks tasks blockIdx.x, + gridDim.x, ... so that it can own one dW2
// slot for the whole pass. by_source selects the orientation of the plan (see top comment).
template <typename T, bool kHasW2>
__global__ void __launch_bounds__(kThreads)
    backward_kernel(const T* __restrict__ S,          // [G, N, Hd]
                    const T* __restrict__ R,          // [G, N, Hd]
                    const T* __restrict__ Q,          // [G, N, A]
                    const T* __restrict__ K,          // [G, N, A]
                    const T* __restrict__ W2,         // [D, Hd] (kHasW2)
                    const T* __restrict__ b2,         // [D] (kHasW2)
                    const T* __restrict__ dO,         // [G, N, D]
                    const float* __restrict__ lse,    // [G, N, heads]
                    const float* __restrict__ delta,  // [G, N, heads]
                    Plan plan,                        // items owning node u
                    T* __restrict__ out_h,            // [G, N, Hd] dR (by dst) or dS (by src)
                    T* __restrict__ out_qk,           // [G, N, A] dQ (by dst) or dK (by src)
                    float* __restrict__ part_h,       // [slots, G, Hd] split-row partials
                    float* __restrict__ part_qk,      // [slots, G, A]
                    float* __restrict__ acc_dS,       // [G, N, Hd] atomics, or null
                    float* __restrict__ acc_dK,       // [G, N, A] atomics, or null
                    float* __restrict__ w2_slots,     // [gridDim.x, pad32(D), pad32(Hd)], or null
                    float* __restrict__ b2_slots,     // [gridDim.x, pad32(D)], or null
                    int64_t tasks, int G, int N, int Hd, int D, int A, int heads, float scale,
                    int by_source) {
  RSTG_DYNAMIC_SMEM(smem);
  const Layout L = make_layout(true, sizeof(T), Hd, D, A, heads, kHasW2);
  T* hs = reinterpret_cast<T*>(smem + L.h);                   // [TM][ldh]
  T* w2s = reinterpret_cast<T*>(smem + L.w2);                 // W2 slice
  float* zs = reinterpret_cast<float*>(smem + L.z);           // [TM][ldz]
  T* dzs = reinterpret_cast<T*>(smem + L.dz);                 // [TM][ldd] dL/dz
  float* dpp = reinterpret_cast<float*>(smem + L.dpp);        // [kThreads / TM][TM][heads]
  float* as = reinterpret_cast<float*>(smem + L.a);           // [TM][heads] attention weights
  float* dss = reinterpret_cast<float*>(smem + L.ds);         // [TM][heads] dL/ds
  float* own_h = reinterpret_cast<float*>(smem + L.own_h);    // [kBG][Hd]
  float* own_qk = reinterpret_cast<float*>(smem + L.own_qk);  // [kBG][A]
  const RowInfo ri = row_info(smem, L);

  const int64_t groups = graph_groups(G);
  const int dh = A / heads, dd = D / heads;
  const int warp = threadIdx.x / 32;
  const int col_lane = threadIdx.x & (kTN - 1);
  const int parity = threadIdx.x / kTN;
  const int row_lane = threadIdx.x % L.tm;  // epilogue: thread (row_lane, quarter) of a tile
  const int quarter = threadIdx.x / L.tm;
  const int quarters = kThreads / L.tm;
  const int dp = pad32(D), hdp = pad32(Hd);
  float* w2_slot = w2_slots ? w2_slots + (int64_t)blockIdx.x * dp * hdp : nullptr;
  float* b2_slot = b2_slots ? b2_slots + (int64_t)blockIdx.x * dp : nullptr;

  for (int64_t task = blockIdx.x; task < tasks; task += gridDim.x) {
    const int64_t item = task / groups;
    const int g0 = int(task - item * groups) * kBG;
    const int bg = min(kBG, G - g0);
    const int u = plan.item_node[item];
    const int p0 = plan.item_begin[item];
    const int len = plan.item_end[item] - p0;
    const int slot = plan.item_slot[item];
    if (len > kChunk) __trap();  // the host plan guarantees items of at most kChunk edges
    const int rows_total = bg * len;
    for (int idx = threadIdx.x; idx < bg * Hd; idx += blockDim.x) own_h[idx] = 0.f;
    for (int idx = threadIdx.x; idx < bg * A; idx += blockDim.x) own_qk[idx] = 0.f;

    for (int t0 = 0; t0 < rows_total; t0 += L.tm) {
      fill_rows(ri, L.tm, t0, rows_total, len, g0, u, p0, plan.other, by_source != 0);
      __syncthreads();
      build_h(hs, L, ri, S, R, N, Hd);
      for (int idx = threadIdx.x; idx < kThreads * heads; idx += blockDim.x) dpp[idx] = 0.f;
      for (int p = warp; p < L.tm * heads; p += kWarps) {  // a = exp(s - lse): one warp per pair
        const int r = p / heads, c = p - r * heads;
        float a = 0.f;
        if (ri.gl[r] >= 0) {
          const int64_t g = ri.g[r];
          const float s = warp_score(Q, K, g, ri.dst[r], ri.src[r], c, N, A, dh, scale);
          a = expf(s - lse[(g * N + ri.dst[r]) * heads + c]);
        }
        if ((threadIdx.x & 31) == 0) as[p] = a;
      }
      __syncthreads();

      // dp = <dO, m> per (row, head) in per-thread partials; dz = a dO [z > 0].
      {
        const int r = row_lane;
        const int gl = ri.gl[r];
        const int64_t orow = ((int64_t)ri.g[r] * N + ri.dst[r]) * D;
        float* my_dp = dpp + (quarter * L.tm + r) * heads;
        if constexpr (kHasW2) {
          for (int n0 = 0; n0 < D; n0 += kTN) {
            mma_h_w2t(hs, w2s, zs, L, W2, Hd, D, n0);
            __syncthreads();
            for (int c = quarter; c < kTN && n0 + c < dp; c += quarters) {
              const int col = n0 + c;
              float dz = 0.f;
              if (gl >= 0 && col < D) {
                const int head = col / dd;
                const float z = zs[r * L.ldz + c] + to_f(b2[col]);
                const float go = to_f(dO[orow + col]);
                my_dp[head] += go * relu_f(z);
                dz = relu_grad_f(z, as[r * heads + head] * go);
              }
              dzs[r * L.ldd + col] = from_f<T>(dz);
            }
            __syncthreads();
          }
        } else {
          if (gl >= 0)
            for (int c = quarter; c < D; c += quarters)
              my_dp[c / dd] += to_f(dO[orow + c]) * to_f(hs[r * L.ldh + c]);
          __syncthreads();
        }
      }

      // ds = a (dp - Delta), summing the partials in a fixed order.
      for (int p = threadIdx.x; p < L.tm * heads; p += blockDim.x) {
        const int r = p / heads, c = p - r * heads;
        float ds = 0.f;
        if (ri.gl[r] >= 0) {
          float dpv = 0.f;
          for (int qq = 0; qq < quarters; ++qq) dpv += dpp[(qq * L.tm + r) * heads + c];
          ds = as[p] * (dpv - delta[((int64_t)ri.g[r] * N + ri.dst[r]) * heads + c]);
        }
        dss[p] = ds;
      }
      __syncthreads();

      // dh = (W2^T dz) [h > 0] (or a dO [h > 0] with one send layer): owner sum + source atomics.
      if constexpr (kHasW2) {
        for (int n0 = 0; n0 < Hd; n0 += kTN) {
          mma_dz_w2(dzs, w2s, zs, L, W2, Hd, D, n0);
          __syncthreads();
          const int k = n0 + col_lane;
          if (k < Hd) {
            for (int r = 0; r < L.tm; ++r) {
              const int gl = ri.gl[r];
              if (gl < 0 || (gl & 1) != parity) continue;
              const float v = relu_grad_f(to_f(hs[r * L.ldh + k]), zs[r * L.ldz + col_lane]);
              own_h[gl * Hd + k] += v;
              if (acc_dS) atomicAdd(&acc_dS[((int64_t)ri.g[r] * N + ri.src[r]) * Hd + k], v);
            }
          }
          __syncthreads();
        }
      } else {
        for (int k = col_lane; k < Hd; k += kTN) {
          const int head = k / dd;
          for (int r = 0; r < L.tm; ++r) {
            const int gl = ri.gl[r];
            if (gl < 0 || (gl & 1) != parity) continue;
            const int64_t g = ri.g[r];
            const float v = relu_grad_f(to_f(hs[r * L.ldh + k]),
                                        as[r * heads + head] * to_f(dO[(g * N + ri.dst[r]) * D + k]));
            own_h[gl * Hd + k] += v;
            if (acc_dS) atomicAdd(&acc_dS[(g * N + ri.src[r]) * Hd + k], v);
          }
        }
      }

      // dQ_i += scale ds K_j (by dst) or dK_j += scale ds Q_i (by src); atomics give dK by dst.
      for (int x = col_lane; x < A; x += kTN) {
        const int head = x / dh;
        for (int r = 0; r < L.tm; ++r) {
          const int gl = ri.gl[r];
          if (gl < 0 || (gl & 1) != parity) continue;
          const int64_t g = ri.g[r];
          const float d = scale * dss[r * heads + head];
          const float q = to_f(Q[(g * N + ri.dst[r]) * A + x]);
          own_qk[gl * A + x] += d * (by_source ? q : to_f(K[(g * N + ri.src[r]) * A + x]));
          if (acc_dK) atomicAdd(&acc_dK[(g * N + ri.src[r]) * A + x], d * q);
        }
      }

      if constexpr (kHasW2) {
        if (w2_slot) accumulate_dw2(dzs, hs, L, w2_slot, b2_slot, Hd, D);
      }
      __syncthreads();
    }

    store_node_rows(own_h, bg, Hd, g0, u, N, G, slot, out_h, part_h);
    store_node_rows(own_qk, bg, A, g0, u, N, G, slot, out_qk, part_qk);
    __syncthreads();
  }
}

// out[g, u, :] = sum of the partials of split node u, in slot order.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    reduce_split_kernel(Plan plan,
                        const float* __restrict__ part,  // [slots, G, width]
                        T* __restrict__ out,             // [G, N, width]
                        int G, int N, int width) {
  const int64_t s = blockIdx.x / G;
  const int64_t g = blockIdx.x - s * G;
  const int u = plan.split_node[s];
  const int first = plan.split_ptr[s], last = plan.split_ptr[s + 1];
  for (int k = threadIdx.x; k < width; k += blockDim.x) {
    float acc = 0.f;
    for (int q = first; q < last; ++q) acc += part[((int64_t)q * G + g) * width + k];
    out[(g * N + u) * width + k] = from_f<T>(acc);
  }
}

// out[r, c] = sum_p slots[p * stride + r * ld + c], in slot order; also float -> T.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    reduce_slots_kernel(const float* __restrict__ slots,  // [P, >= rows, ld]
                        T* __restrict__ out,              // [rows, cols]
                        int64_t P, int64_t rows, int64_t cols, int64_t ld, int64_t stride) {
  for (int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; t < rows * cols;
       t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = t / cols, c = t - r * cols;
    float acc = 0.f;
    for (int64_t p = 0; p < P; ++p) acc += slots[p * stride + r * ld + c];
    out[t] = from_f<T>(acc);
  }
}

unsigned stride_blocks(int64_t work) {
  const int64_t b = (work + kThreads - 1) / kThreads;
  return unsigned(b < 1 ? 1 : (b > 8192 ? 8192 : b));
}

template <typename T, bool kHasW2>
void launch_backward(const MaArgs& in, const Dims& d, float scale, cudaStream_t stream) {
  const Layout L =
      make_layout(true, sizeof(T), int(d.Hd), int(d.D), int(d.A), int(d.heads), kHasW2);
  const bool det = in.deterministic != 0;
  const int64_t P = in.blocks;
  if (P < 1 || P > 65535)
    throw std::invalid_argument("message_attention cuda backend: blocks must be in [1, 65535]");
  const Plan& dplan = in.d;
  const Plan& splan = det ? in.s : dplan;
  const int64_t groups = graph_groups(d.G);
  const int G = int(d.G), N = int(d.N), Hd = int(d.Hd), D = int(d.D), A = int(d.A),
            H = int(d.heads);
  auto c = [](const void* p) { return static_cast<const T*>(p); };
  auto m = [](void* p) { return static_cast<T*>(p); };
  const T* S = c(in.S);
  const T* R = c(in.R);
  const T* Q = c(in.Q);
  const T* Kp = c(in.K);
  const T* W2 = kHasW2 ? c(in.W2) : nullptr;
  const T* b2 = kHasW2 ? c(in.b2) : nullptr;
  const T* dO = c(in.dO);
  const float* lse = static_cast<const float*>(in.lse);
  float* delta = in.delta;
  T* dS = m(in.dS);
  T* dR = m(in.dR);
  T* dQ = m(in.dQ);
  T* dK = m(in.dK);
  float* acc_dS = det ? nullptr : in.acc_dS;
  float* acc_dK = det ? nullptr : in.acc_dK;
  float* w2_slots = kHasW2 ? in.w2_slots : nullptr;
  float* b2_slots = kHasW2 ? in.b2_slots : nullptr;
  for (const Plan* p : {&dplan, &splan})
    if (p->items * groups >= 0x7fffffff || p->splits * d.G >= 0x7fffffff)
      throw std::invalid_argument(
          "message_attention cuda backend: too many tasks (items x graph groups)");

  auto kernel = backward_kernel<T, kHasW2>;
  prepare_smem(kernel, L.total, "backward_kernel");

  RSTG_LAUNCH(delta_kernel<T>, stride_blocks(d.G * d.N * d.heads), kThreads, 0, stream)(
      dO, c(in.O), delta, d.G * d.N, D, H);
  RSTG_CUDA_CHECK_LAUNCH("message_attention delta_kernel");

  // out = the sum over `slots` float partials (fixed order), cast to T.
  auto reduce_slots = [&](const float* src, T* out, int64_t slots, int64_t rows, int64_t width,
                          int64_t ld, int64_t slot_stride, const char* what) {
    RSTG_LAUNCH(reduce_slots_kernel<T>, stride_blocks(rows * width), kThreads, 0, stream)(
        src, out, slots, rows, width, ld, slot_stride);
    RSTG_CUDA_CHECK_LAUNCH(std::string("message_attention reduce_slots_kernel (") + what + ")");
  };
  // One pass of the backward kernel over an edge-list orientation (by destination: dR, dQ;
  // by source: dS, dK), then the sums of its split rows' partials.
  auto pass = [&](const Plan& plan, int by_source, T* out_h, T* out_qk, float* acc_h,
                  float* acc_qk, float* w2s, float* b2s) {
    const std::string side = by_source ? "source" : "destination";
    float* part_h = by_source ? in.s_part_h : in.d_part_h;
    float* part_qk = by_source ? in.s_part_qk : in.d_part_qk;
    const int64_t tasks = plan.items * groups;
    RSTG_LAUNCH(kernel, unsigned(tasks < P ? tasks : P), kThreads, L.total, stream)(
        S, R, Q, Kp, W2, b2, dO, lse, delta, plan, out_h, out_qk, part_h, part_qk, acc_h, acc_qk,
        w2s, b2s, tasks, G, N, Hd, D, A, H, scale, by_source);
    RSTG_CUDA_CHECK_LAUNCH("message_attention backward_kernel (by " + side + ")");
    if (plan.splits > 0) {
      RSTG_LAUNCH(reduce_split_kernel<T>, unsigned(plan.splits * d.G), kThreads, 0, stream)(
          plan, part_h, out_h, G, N, Hd);
      RSTG_CUDA_CHECK_LAUNCH("message_attention reduce_split_kernel (by " + side + ", h)");
      RSTG_LAUNCH(reduce_split_kernel<T>, unsigned(plan.splits * d.G), kThreads, 0, stream)(
          plan, part_qk, out_qk, G, N, A);
      RSTG_CUDA_CHECK_LAUNCH("message_attention reduce_split_kernel (by " + side + ", qk)");
    }
  };
  pass(dplan, 0, dR, dQ, acc_dS, acc_dK, w2_slots, b2_slots);
  if (det) {
    pass(splan, 1, dS, dK, nullptr, nullptr, nullptr, nullptr);
  } else {
    reduce_slots(acc_dS, dS, 1, d.G * d.N, d.Hd, d.Hd, 0, "dS");
    reduce_slots(acc_dK, dK, 1, d.G * d.N, d.A, d.A, 0, "dK");
  }

  if constexpr (kHasW2) {
    const int64_t dp = pad32(D), hdp = pad32(Hd);
    reduce_slots(w2_slots, m(in.dW2), P, d.D, d.Hd, hdp, dp * hdp, "dW2");
    reduce_slots(b2_slots, m(in.db2), P, 1, d.D, dp, dp, "db2");
  }
}

}  // namespace
}  // namespace ma

void message_attention_backward_cuda(const MaArgs& args) {
  ma::dispatch_entry(args, "backward", [&](auto tag, auto has_w2, const ma::Dims& d,
                                           cudaStream_t stream) {
    ma::launch_backward<typename decltype(tag)::type, decltype(has_w2)::value>(
        args, d, float(args.scale), stream);
  });
}

}  // namespace rstg
