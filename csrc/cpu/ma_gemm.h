// Register-blocked GEMM micro-kernel for the per-edge products of message_attention.
//
// One template over the element type. Vectors are GCC/Clang generic vectors of the widest
// width the build targets (64 bytes with AVX-512, 32 with AVX, 16 otherwise), so the same
// source compiles to zmm/ymm/xmm FMAs (-march=native, or the portable x86-64-v2 fallback).
// A micro-tile is kMR rows x kNV vectors of columns, held in kMR * kNV accumulators. With
// AVX-512 it is 8 x 3 zmm: 24 accumulators + 3 B vectors + the broadcast A element = 28 of
// the 32 registers. Measured on this machine's Xeon (one core, cached operands, CPU time,
// against a 244 GFLOP/s register-only FMA loop): 8x3 94 %, 6x4 and 12x2 92 %, 8x2 78 %.
// With 16 vector registers (AVX2, SSE) the tile is 6 x 2.
//
// Layout conventions (all row-major, element strides):
//   A  [Mp, K] with row stride lda; Mp a multiple of kMR (callers zero-pad the tail rows).
//      A can also come in kMR-row blocks (kPackedA): block b (rows b*kMR ..) is K x kMR
//      contiguous at A + b * kMR * K, element (r, k) at [k * kMR + r], so the kMR elements a
//      k-step broadcasts are adjacent and a block is one contiguous stream (backward:
//      dW2 += dz^T @ h, with dz^T written in this layout by the epilogue).
//   B  [K, Np], either a plain matrix with row stride ldb, or "packed": column panels of
//      kNR columns (the last one narrower, a whole number of vectors), panel p stored
//      contiguously at B + p * kNR * K with its own width as row stride (pack_panel).
//   C  [Mp, Np] with row stride ldc. Np is a multiple of the vector width kLanes.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

namespace rstg::cpu {

#if defined(__AVX512F__)
constexpr int kVecBytes = 64;
#elif defined(__AVX__)
constexpr int kVecBytes = 32;
#else
constexpr int kVecBytes = 16;
#endif

template <typename T>
struct VecOf {
  typedef T type __attribute__((vector_size(kVecBytes)));
};
template <typename T>
using Vec = typename VecOf<T>::type;

template <typename T>
constexpr int kLanes = kVecBytes / static_cast<int>(sizeof(T));
constexpr int kNV = kVecBytes == 64 ? 3 : 2;  // vectors across a micro-tile
constexpr int kMR = kVecBytes == 64 ? 8 : 6;  // rows of a micro-tile
template <typename T>
constexpr int kNR = kNV * kLanes<T>;  // columns of a full micro-tile

constexpr int64_t kL2ChunkBytes = 512 * 1024;  // share of the 2 MB L2 a B chunk may take

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

template <typename T>
inline Vec<T> vload(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof(v));  // unaligned load; compiles to one vmovups
  return v;
}

template <typename T>
inline void vstore(T* p, const Vec<T>& v) {
  std::memcpy(p, &v, sizeof(v));
}

// C[kMR, NV vectors] (= or +=) A[kMR, K] * B[K, NV vectors]; with kTransA, element (r, k) of
// A is at A[k * lda + r] (packed row blocks have lda = kMR). Accumulating calls sum their K
// products from zero and add C once at the end: the backward's dW2 partial (one call per
// tile, K = the tile's rows) then grows by per-tile sums instead of one float32 chain over
// every row a thread takes, whose error grew with G x E (float32 dW2 error 10x the float32
// reference's at paper's 11,520 rows per thread, beyond the test tolerance at ~20,000).
// Same loads, stores and FMAs as before.
template <typename T, int NV, bool kAccumulate, bool kTransA>
inline void micro_kernel(int64_t K, const T* __restrict A, int64_t lda, const T* __restrict B,
                         int64_t ldb, T* __restrict C, int64_t ldc) {
  constexpr int L = kLanes<T>;
  Vec<T> c[kMR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < kMR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) c[r][v] = Vec<T>{};
  for (int64_t k = 0; k < K; ++k) {
    Vec<T> b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) b[v] = vload(B + k * ldb + v * L);
#pragma GCC unroll 8
    for (int r = 0; r < kMR; ++r) {
      const T a = kTransA ? A[k * lda + r] : A[r * lda + k];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) c[r][v] += a * b[v];  // one FMA (-ffp-contract=fast, GCC's default)
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < kMR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      vstore(C + r * ldc + v * L, kAccumulate ? vload(C + r * ldc + v * L) + c[r][v] : c[r][v]);
}

// Columns [n0, n0 + NV vectors) of rows [m, m + kMR) of C; B points at the panel.
template <typename T, int NV, bool kAccumulate, bool kPackedA>
inline void block(int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb, T* C, int64_t ldc,
                  int64_t m, int64_t n0) {
  if constexpr (kPackedA)
    micro_kernel<T, NV, kAccumulate, true>(K, A + m * lda, kMR, B, ldb, C + m * ldc + n0, ldc);
  else
    micro_kernel<T, NV, kAccumulate, false>(K, A + m * lda, lda, B, ldb, C + m * ldc + n0, ldc);
}

// C[Mp, Np] (= or +=) A[Mp, K] * B[K, Np]; see the layout conventions above.
// Loop order by the size of a B panel (K x kNR):
//  - large K (h @ W2^T, dz @ W2: K = Hd or D): row blocks outside, panels inside; the kMR
//    rows of A stay in L1 while the panels of B (the packed W2) stream from L2. Panels go
//    in chunks of about kL2ChunkBytes: every row block passes over one chunk before the
//    next, so the chunk stays in L2 beside the tile buffers;
//  - small K (dW2 += dz^T @ h: K = the tile's rows): panels outside, row blocks inside; the
//    panel of B fits in L1 and A streams instead, several times less L2 traffic.
// (Fusing the epilogues into the products, row block by row block, measured slower: the
// epilogues' scattered reads and writes evicted the B chunk, paper forward+backward 68 -> 88 ms.)
template <typename T, bool kAccumulate, bool kPackedA = false>
void gemm(int64_t Mp, int64_t Np, int64_t K, const T* A, int64_t lda, const T* B, bool packed,
          int64_t ldb, T* C, int64_t ldc) {
  constexpr int L = kLanes<T>, NR = kNR<T>;
  const int64_t full = Np / NR * NR, rest = (Np - full) / L;  // rest: 0 .. kNV - 1 vectors
  const T* Brest = packed ? B + full * K : B + full;
  auto panel = [&](int64_t n0) { return packed ? B + n0 * K : B + n0; };
  auto rest_block = [&](int64_t m) {
    if (rest == 1) block<T, 1, kAccumulate, kPackedA>(K, A, lda, Brest, packed ? L : ldb, C, ldc, m, full);
    if constexpr (kNV > 2)
      if (rest == 2)
        block<T, 2, kAccumulate, kPackedA>(K, A, lda, Brest, packed ? 2 * L : ldb, C, ldc, m, full);
  };
  const int64_t ldp = packed ? NR : ldb;
  const int64_t panel_bytes = K * NR * int64_t(sizeof(T));
  if (panel_bytes > 24 * 1024) {
    const int64_t chunk = std::max<int64_t>(1, kL2ChunkBytes / panel_bytes) * NR;
    for (int64_t c0 = 0; c0 < full || (c0 == 0 && rest); c0 += chunk) {
      const int64_t c1 = std::min(c0 + chunk, full);
      for (int64_t m = 0; m < Mp; m += kMR) {
        for (int64_t n0 = c0; n0 < c1; n0 += NR)
          block<T, kNV, kAccumulate, kPackedA>(K, A, lda, panel(n0), ldp, C, ldc, m, n0);
        if (c1 == full) rest_block(m);
      }
    }
  } else {
    for (int64_t n0 = 0; n0 < full; n0 += NR)
      for (int64_t m = 0; m < Mp; m += kMR)
        block<T, kNV, kAccumulate, kPackedA>(K, A, lda, panel(n0), ldp, C, ldc, m, n0);
    for (int64_t m = 0; m < Mp; m += kMR) rest_block(m);
  }
}

// Number of column panels of a packed matrix of `width` columns (width rounded to vectors).
template <typename T>
inline int64_t num_panels(int64_t width) {
  return (round_up(width, kLanes<T>) + kNR<T> - 1) / kNR<T>;
}

// Packs panel p of op(W) for gemm(), op(W) = W^T or W of the [rows, cols] row-major W:
//   transpose = true : op(W) = W^T, K = cols, columns across rows  (forward: h @ W2^T)
//   transpose = false: op(W) = W,   K = rows, columns across cols  (backward: dz @ W2)
// Columns beyond op(W)'s width are zero. The packed matrix holds round_up(width, kLanes) * K
// elements; callers split the panels across threads.
template <typename T>
void pack_panel(const T* W, int64_t rows, int64_t cols, bool transpose, int64_t p, T* out) {
  constexpr int NR = kNR<T>;
  const int64_t K = transpose ? cols : rows;
  const int64_t width = transpose ? rows : cols;
  const int64_t wp = std::min<int64_t>(NR, round_up(width, kLanes<T>) - p * NR);
  T* dst = out + p * NR * K;
  for (int64_t k = 0; k < K; ++k) {
    for (int64_t v = 0; v < wp; ++v) {
      const int64_t n = p * NR + v;
      T value = T(0);
      if (n < width) value = transpose ? W[n * cols + k] : W[k * cols + n];
      dst[k * wp + v] = value;
    }
  }
}

}  // namespace rstg::cpu
