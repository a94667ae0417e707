// Shared pieces of the message_attention kernels: tile sizes, dtype traits, the shared
// memory layout (mirrored by rstg_fast/ops/backends/cuda.py::smem_bytes), launch-limit
// checks, and the device tiles used by forward and backward.
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

constexpr int kThreads = 128;  // 4 warps; each warp owns one 16-column slice of a TN tile
constexpr int kWarps = kThreads / 32;
constexpr int kTN = 64;        // output columns per MMA tile (= 16 * kWarps)
constexpr int kTK = 32;        // reduction slice of W2 staged per step; Hd, D padded to it
constexpr int kBG = 8;         // graphs per task
constexpr int kChunk = 32;     // most edges per item (longer rows are split)
constexpr int kPadBytes = 16;  // row skew of shared tiles against bank conflicts
constexpr int64_t kSmemCap = 160 * 1024;  // below sm_80's 163 KiB opt-in maximum
static_assert(kTN == 16 * kWarps, "one 16-wide fragment column per warp");

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

__host__ __device__ constexpr int pad32(int x) { return (x + 31) / 32 * 32; }
__host__ __device__ constexpr int64_t align128(int64_t bytes) { return (bytes + 127) / 128 * 128; }

// Byte offsets of the shared buffers. Forward and backward use different subsets; absent
// buffers have size 0. Every offset is 128-byte aligned (WMMA needs 32).
struct Layout {
  int tm, ldh, ldw, ldb, ldz, ldd;  // rows per tile; leading dims (elements)
  int64_t h, w2, z, dz, oacc, sc, lse, rows, dpp, a, ds, own_h, own_qk, total;
};

__host__ __device__ inline Layout make_layout(bool backward, int es, int Hd, int D, int A,
                                              int heads, bool has_w2) {
  Layout L{};
  const int pad = kPadBytes / es;
  L.tm = es == 4 ? 16 : 32;
  L.ldh = pad32(Hd) + pad;
  L.ldw = kTK + pad;  // W2 slice [kTN][kTK] (B of z = h W2^T, col-major)
  L.ldb = kTN + pad;  // W2 slice [kTK][kTN] (B of dh = dz W2, row-major)
  L.ldz = kTN + 4;
  L.ldd = pad32(D) + pad;
  const int64_t w2_elems =
      (int64_t)kTN * L.ldw > (int64_t)kTK * L.ldb ? (int64_t)kTN * L.ldw : (int64_t)kTK * L.ldb;
  int64_t off = 0;
  auto take = [&off](int64_t bytes) {
    const int64_t at = off;
    off += align128(bytes);
    return at;
  };
  L.h = take((int64_t)L.tm * L.ldh * es);
  L.w2 = take(has_w2 ? w2_elems * es : 0);
  L.z = take(has_w2 ? (int64_t)L.tm * L.ldz * 4 : 0);
  L.rows = take((int64_t)L.tm * 4 * 4);
  if (!backward) {
    L.oacc = take((int64_t)kBG * D * 4);
    L.sc = take((int64_t)kBG * kChunk * heads * 4);
    L.lse = take((int64_t)kBG * heads * 4);
  } else {
    L.dz = take(has_w2 ? (int64_t)L.tm * L.ldd * es : 0);
    L.dpp = take((int64_t)kThreads * heads * 4);
    L.a = take((int64_t)L.tm * heads * 4);
    L.ds = take((int64_t)L.tm * heads * 4);
    L.own_h = take((int64_t)kBG * Hd * 4);
    L.own_qk = take((int64_t)kBG * A * 4);
  }
  L.total = off;
  return L;
}

// Named fields of the argument map; a missing field is a programming error on the Python side.
struct ArgReader {
  const MaArgs& args;
  int64_t get(const char* name) const {
    auto it = args.find(name);
    if (it == args.end())
      throw std::invalid_argument(std::string("message_attention CUDA: missing argument '") + name +
                                  "'");
    return it->second;
  }
  template <typename P>
  P* ptr(const char* name) const {
    return reinterpret_cast<P*>(static_cast<uintptr_t>(get(name)));
  }
};

// Sizes every launcher checks before any launch (mirrored in cuda.py::check_launch_limits).
struct Dims {
  int64_t G, N, E, Hd, D, A, heads;
  bool has_w2;
};

inline Dims read_dims(const ArgReader& in) {
  Dims d{in.get("G"), in.get("N"), in.get("E"),     in.get("Hd"),
         in.get("D"), in.get("A"), in.get("heads"), in.get("has_w2") != 0};
  return d;
}

inline void check_limits(const Dims& d, int es, const char* who) {
  auto fail = [who](const std::string& what) {
    throw std::invalid_argument(std::string("message_attention cuda backend (") + who +
                                "): " + what);
  };
  if (d.G < 1 || d.N < 1 || d.Hd < 1 || d.D < 1 || d.A < 1 || d.heads < 1)
    fail("G, N, Hd, D, A and heads must be positive");
  if (d.A % d.heads || d.D % d.heads) fail("heads must divide A and D");
  if (!d.has_w2 && d.D != d.Hd) fail("D must equal Hd without W2");
  const int64_t int_max = 0x7fffffff;
  if (d.N >= int_max || d.E >= int_max || d.G >= int_max)
    fail("G, N and E must be below 2^31, got G=" + std::to_string(d.G) +
         " N=" + std::to_string(d.N) + " E=" + std::to_string(d.E));
  const int64_t fwd =
      make_layout(false, es, int(d.Hd), int(d.D), int(d.A), int(d.heads), d.has_w2).total;
  const int64_t bwd =
      make_layout(true, es, int(d.Hd), int(d.D), int(d.A), int(d.heads), d.has_w2).total;
  if (d.Hd > (1 << 20) || d.D > (1 << 20) || d.A > (1 << 20) || fwd > kSmemCap || bwd > kSmemCap)
    fail("shared memory per block would be " + std::to_string(fwd > bwd ? fwd : bwd) +
         " bytes, over the kernel limit of " + std::to_string(kSmemCap) + " (Hd=" +
         std::to_string(d.Hd) + ", D=" + std::to_string(d.D) + ", A=" + std::to_string(d.A) +
         ", heads=" + std::to_string(d.heads) + "); use a smaller width or the triton backend");
}

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
struct Plan {
  const int32_t* item_node;   // [items] owner node u of the item
  const int32_t* item_begin;  // [items] first position in `other`
  const int32_t* item_end;    // [items] one past the last position
  const int32_t* item_slot;   // [items] partial slot, -1 when the item is its node's whole row
  const int32_t* other;       // [E] the other end of each edge (source by dst, dest by src)
  const int32_t* split_node;  // [splits] nodes cut into several items
  const int32_t* split_ptr;   // [splits + 1] slot range of each split node
  int64_t items, splits, slots;
};

inline Plan read_plan(const ArgReader& in, const std::string& p) {
  Plan plan{in.ptr<const int32_t>((p + "item_node").c_str()),
            in.ptr<const int32_t>((p + "item_begin").c_str()),
            in.ptr<const int32_t>((p + "item_end").c_str()),
            in.ptr<const int32_t>((p + "item_slot").c_str()),
            in.ptr<const int32_t>((p + "other").c_str()),
            in.ptr<const int32_t>((p + "split_node").c_str()),
            in.ptr<const int32_t>((p + "split_ptr").c_str()),
            in.get((p + "items").c_str()),
            in.get((p + "splits").c_str()),
            in.get((p + "slots").c_str())};
  return plan;
}

__host__ __device__ inline int64_t graph_groups(int64_t G) { return (G + kBG - 1) / kBG; }

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

// Everything an entry point does before its launcher: read the arguments, check the limits
// for the element size, then turn the runtime dtype and "has W2" into template arguments
// (flash-attention's BOOL_SWITCH): fn(DtypeTag<T>{}, std::bool_constant<W2>{}, in, dims, stream).
template <typename Fn>
void dispatch_entry(const MaArgs& args, const char* who, Fn&& fn) {
  const ArgReader in{args};
  const Dims d = read_dims(in);
  auto stream = reinterpret_cast<cudaStream_t>(static_cast<uintptr_t>(in.get("stream")));
  auto with_w2 = [&](auto tag) {
    check_limits(d, int(sizeof(typename decltype(tag)::type)), who);
    if (d.has_w2)
      fn(tag, std::true_type{}, in, d, stream);
    else
      fn(tag, std::false_type{}, in, d, stream);
  };
  switch (in.get("dtype")) {
    case 0:
      return with_w2(DtypeTag<float>{});
    case 1:
      return with_w2(DtypeTag<__half>{});
    case 2:
      return with_w2(DtypeTag<__nv_bfloat16>{});
    default:
      throw std::invalid_argument("message_attention cuda backend: dtype code must be 0, 1 or 2");
  }
}

}  // namespace ma
}  // namespace rstg
