// Shared pieces of the message_attention kernels: dtype traits, the device tiles used by
// forward and backward, and the entry points' dtype dispatch. Tile sizes, the shared-memory
// layout and the launch limits are in cuda/ma_layout.h (plain C++, exposed by the module).
//
// Work decomposition (both directions). A "row" of the op is one (graph g, edge p) pair.
// The host plan cuts every node's edge list into items of at most kChunk edges; a task is
// (item, group of kBG graphs), so one block sees up to kBG * kChunk rows that share the
// owner node u and one index list (docs/design.md §7: the topology is shared by all graphs).
// Rows are processed in tiles of TM: h = relu(S[src] + R[dst]) is built in shared memory,
// z = h @ W2^T runs on tensor cores (WMMA) in TN-column tiles with W2 streamed in TK slices.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "cuda/ma_layout.h"
#include "cuda/message_attention_cuda.h"

#ifdef RSTG_CUDA_EMULATION  // the CPU emulation of tests/cuda_emu (same source, host compiler)
#include "cuda_emulation.h"
#else
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include "cuda/cuda_check.cuh"
#define RSTG_DYNAMIC_SMEM(name) extern __shared__ __align__(128) char name[]
#define RSTG_LAUNCH(kernel, grid, threads, smem, stream) kernel<<<grid, threads, smem, stream>>>
#endif

namespace rstg {
namespace ma {

namespace wmma = nvcuda::wmma;

// float runs on the tensor cores as 3xTF32 (hi*hi + hi*lo + lo*hi): float32-accurate.
template <typename T>
struct Traits;
template <>
struct Traits<float> {
  using Frag = wmma::precision::tf32;
  static constexpr int kK = 8;    // WMMA k of m16n16k8
  static constexpr int kTM = 16;  // rows per tile (float tiles are twice as wide in bytes)
  static constexpr bool kSplit = true;
};
template <>
struct Traits<__half> {
  using Frag = __half;
  static constexpr int kK = 16;
  static constexpr int kTM = 32;
  static constexpr bool kSplit = false;
};
template <>
struct Traits<__nv_bfloat16> {
  using Frag = __nv_bfloat16;
  static constexpr int kK = 16;
  static constexpr int kTM = 32;
  static constexpr bool kSplit = false;
};

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T>
__device__ __forceinline__ T from_f(float x);
template <>
__device__ __forceinline__ float from_f<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __half from_f<__half>(float x) {
  return __float2half_rn(x);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// Non-finite values follow the reference (PyTorch; docs/design.md section 2): relu(nan) = nan,
// a ReLU passes its gradient unless its output is <= 0 (so a NaN output passes it, as torch's
// threshold_backward), and a max keeps NaN. fmaxf(x, 0) returns 0 for NaN, and `x > 0 ? g : 0`
// drops the gradient of a NaN, which hid diverging runs; these are one compare and select each.
__device__ __forceinline__ float relu_f(float x) { return x < 0.f ? 0.f : x; }
__device__ __forceinline__ float relu_grad_f(float out, float g) { return out <= 0.f ? 0.f : g; }
__device__ __forceinline__ float max_keep_nan(float m, float v) { return (m < v || v != v) ? v : m; }

// Raises the block's dynamic shared-memory ceiling and checks it against the device.
template <typename Kernel>
void prepare_smem(Kernel kernel, int64_t bytes, const char* name) {
#ifdef RSTG_CUDA_EMULATION
  (void)kernel;
  if (bytes > kSmemCap)
    throw std::invalid_argument(std::string("emulation: smem over cap in ") + name);
#else
  int device = 0, optin = 0;
  RSTG_CUDA_CHECK(cudaGetDevice(&device));
  RSTG_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  if (bytes > optin)
    throw std::invalid_argument(std::string("message_attention cuda backend: ") + name + " needs " +
                                std::to_string(bytes) + " bytes of shared memory, device allows " +
                                std::to_string(optin));
  RSTG_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
#endif
}

// The plan of one edge-list orientation (by destination, or transposed by source).
using Plan = MaPlan;

// ---------------------------------------------------------------- device tiles

// Per-row bookkeeping of the current tile, in shared memory.
struct RowInfo {
  int* g;    // [TM] graph
  int* dst;  // [TM] destination node i
  int* src;  // [TM] source node j
  int* gl;   // [TM] graph within the task, -1 for a padding row
};

__device__ __forceinline__ RowInfo row_info(char* smem, const Layout& L) {
  int* base = reinterpret_cast<int*>(smem + L.rows);
  return RowInfo{base, base + L.tm, base + 2 * L.tm, base + 3 * L.tm};
}

// Fills the row table for task rows [t0, t0 + TM): row r = gl * len + el.
__device__ __forceinline__ void fill_rows(const RowInfo& ri, int tm, int t0, int rows_total,
                                          int len, int g0, int u, int p0, const int32_t* other,
                                          bool by_source) {
  for (int r = threadIdx.x; r < tm; r += blockDim.x) {
    const int row = t0 + r;
    if (row < rows_total) {
      const int gl = row / len, el = row - gl * len;
      const int v = other[p0 + el];
      ri.g[r] = g0 + gl;
      ri.dst[r] = by_source ? v : u;
      ri.src[r] = by_source ? u : v;
      ri.gl[r] = gl;
    } else {
      ri.g[r] = ri.dst[r] = ri.src[r] = 0;
      ri.gl[r] = -1;
    }
  }
}

// hs[r][k] = relu(S[g, src, k] + R[g, dst, k]); zero for padding rows and k in [Hd, pad32(Hd)).
template <typename T>
__device__ __forceinline__ void build_h(T* hs, const Layout& L, const RowInfo& ri,
                                        const T* __restrict__ S, const T* __restrict__ R, int N,
                                        int Hd) {
  const int hdp = pad32(Hd);
  for (int idx = threadIdx.x; idx < L.tm * hdp; idx += blockDim.x) {
    const int r = idx / hdp, k = idx - r * hdp;
    float v = 0.f;
    if (ri.gl[r] >= 0 && k < Hd) {
      const int64_t g = ri.g[r];
      v = relu_f(to_f(S[(g * N + ri.src[r]) * Hd + k]) + to_f(R[(g * N + ri.dst[r]) * Hd + k]));
    }
    hs[r * L.ldh + k] = from_f<T>(v);
  }
}

// The block's float accumulator acc [bg, width] of node u for graphs g0 .. g0 + bg: into
// out[g, u, :] (as Out) when the node is not split (slot < 0), else into its float partial
// part[slot, g, :], which a merge kernel sums in slot order.
template <typename Out>
__device__ __forceinline__ void store_node_rows(const float* acc, int bg, int width, int64_t g0,
                                                int u, int N, int64_t G, int slot, Out* out,
                                                float* part) {
  for (int idx = threadIdx.x; idx < bg * width; idx += blockDim.x) {
    const int gl = idx / width, k = idx - gl * width;
    const int64_t g = g0 + gl;
    if (slot < 0)
      out[(g * N + u) * width + k] = from_f<Out>(acc[idx]);
    else
      part[((int64_t)slot * G + g) * width + k] = acc[idx];
  }
}

// scale * <Q[g, dst, head c], K[g, src, head c]>, reduced over one warp (all lanes get it).
template <typename T>
__device__ __forceinline__ float warp_score(const T* __restrict__ Q, const T* __restrict__ K,
                                            int64_t g, int dst, int src, int c, int N, int A,
                                            int dh, float scale) {
  const int lane = threadIdx.x & 31;
  const T* q = Q + (g * N + dst) * A + (int64_t)c * dh;
  const T* k = K + (g * N + src) * A + (int64_t)c * dh;
  float acc = 0.f;
  for (int x = lane; x < dh; x += 32) acc += to_f(q[x]) * to_f(k[x]);
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  return acc * scale;
}

// x = hi + lo in tf32 pieces; fin = hi where x is finite, else 0. For x = +-inf or NaN, lo
// is 0 (x - hi was inf - inf = NaN) and the cross terms must not see hi either: lo_a * inf can
// be an infinity of the other sign than a * inf (lo_a < 0 < a), or 0 * inf = NaN. So only
// hi * hi carries a non-finite value, as x * y does in float32.
template <typename Frag>
__device__ __forceinline__ void split_tf32(Frag& hi, Frag& lo, Frag& fin) {
  for (int t = 0; t < hi.num_elements; ++t) {
    const float x = hi.x[t];
    const bool finite = fabsf(x) <= 3.402823466e38f;  // false for +-inf and NaN
    hi.x[t] = wmma::__float_to_tf32(x);
    lo.x[t] = finite ? wmma::__float_to_tf32(x - hi.x[t]) : 0.f;
    fin.x[t] = finite ? hi.x[t] : 0.f;
  }
}

// acc += a @ b on the tensor cores; float as 3xTF32 (the lo*lo term is below float32 rounding).
template <typename T, typename FA, typename FB, typename FC>
__device__ __forceinline__ void mma(FC& acc, FA& a, FB& b) {
  if constexpr (Traits<T>::kSplit) {
    FA a_lo, a_fin;
    FB b_lo, b_fin;
    split_tf32(a, a_lo, a_fin);
    split_tf32(b, b_lo, b_fin);
    wmma::mma_sync(acc, a_lo, b_fin, acc);
    wmma::mma_sync(acc, a_fin, b_lo, acc);
  }
  wmma::mma_sync(acc, a, b, acc);
}

template <typename T>
using FragA = wmma::fragment<wmma::matrix_a, 16, 16, Traits<T>::kK, typename Traits<T>::Frag,
                             wmma::row_major>;
template <typename T>
using FragAT = wmma::fragment<wmma::matrix_a, 16, 16, Traits<T>::kK, typename Traits<T>::Frag,
                              wmma::col_major>;
template <typename T>
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, Traits<T>::kK, typename Traits<T>::Frag,
                             wmma::row_major>;
template <typename T>
using FragBT = wmma::fragment<wmma::matrix_b, 16, 16, Traits<T>::kK, typename Traits<T>::Frag,
                              wmma::col_major>;
template <typename T>
using FragC = wmma::fragment<wmma::accumulator, 16, 16, Traits<T>::kK, float>;

// zs[TM][kTN] = hs[TM][pad32(Hd)] @ W2[n0 : n0 + kTN, :]^T (rows of W2 past D are zero).
// Starts and ends with all threads past a barrier-free region: callers __syncthreads() after.
template <typename T>
__device__ void mma_h_w2t(const T* hs, T* w2s, float* zs, const Layout& L, const T* __restrict__ W2,
                          int Hd, int D, int n0) {
  constexpr int MF = Traits<T>::kTM / 16;
  const int warp = threadIdx.x / 32;
  FragC<T> acc[MF];
  for (int mf = 0; mf < MF; ++mf) wmma::fill_fragment(acc[mf], 0.f);
  const int hdp = pad32(Hd);
  for (int k0 = 0; k0 < hdp; k0 += kTK) {
    for (int idx = threadIdx.x; idx < kTN * kTK; idx += blockDim.x) {
      const int n = idx / kTK, k = idx - n * kTK;
      const int gn = n0 + n, gk = k0 + k;
      w2s[n * L.ldw + k] = (gn < D && gk < Hd) ? W2[(int64_t)gn * Hd + gk] : from_f<T>(0.f);
    }
    __syncthreads();
    for (int ks = 0; ks < kTK; ks += Traits<T>::kK) {
      FragBT<T> b;
      wmma::load_matrix_sync(b, w2s + warp * 16 * L.ldw + ks, L.ldw);
      for (int mf = 0; mf < MF; ++mf) {
        FragA<T> a;
        FragBT<T> bb = b;
        wmma::load_matrix_sync(a, hs + mf * 16 * L.ldh + k0 + ks, L.ldh);
        mma<T>(acc[mf], a, bb);
      }
    }
    __syncthreads();
  }
  for (int mf = 0; mf < MF; ++mf)
    wmma::store_matrix_sync(zs + mf * 16 * L.ldz + warp * 16, acc[mf], L.ldz, wmma::mem_row_major);
}

// The element type named by the Python side's dtype code (0 float, 1 half, 2 bfloat16).
template <typename T>
struct DtypeTag {
  using type = T;
};

// Everything an entry point does before its launcher: check the limits for the element
// size, then turn the runtime dtype and "has W2" into template arguments (flash-attention's
// BOOL_SWITCH): fn(DtypeTag<T>{}, std::bool_constant<W2>{}, dims, stream).
template <typename Fn>
void dispatch_entry(const MaArgs& args, const char* who, Fn&& fn) {
  const Dims d{args.G, args.N, args.E, args.Hd, args.D, args.A, args.heads, args.has_w2()};
  auto stream = reinterpret_cast<cudaStream_t>(args.stream);
  auto with_w2 = [&](auto tag) {
    check_limits(d, int(sizeof(typename decltype(tag)::type)), who);
    if (d.has_w2)
      fn(tag, std::true_type{}, d, stream);
    else
      fn(tag, std::false_type{}, d, stream);
  };
  switch (args.dtype) {
    case kMaFloat32:
      return with_w2(DtypeTag<float>{});
    case kMaFloat16:
      return with_w2(DtypeTag<__half>{});
    case kMaBFloat16:
      return with_w2(DtypeTag<__nv_bfloat16>{});
    default:
      throw std::invalid_argument(
          "message_attention cuda backend: dtype code must be 0, 1 or 2 (float32, float16, "
          "bfloat16), got " + std::to_string(args.dtype));
  }
}

}  // namespace ma
}  // namespace rstg
