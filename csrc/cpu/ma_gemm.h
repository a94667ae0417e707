// Register-blocked GEMM micro-kernel for the per-edge products of message_attention.
//
// One template over the element type. Vectors are GCC/Clang generic vectors of the widest
// width the build targets (64 bytes with AVX-512, 32 with AVX, 16 otherwise), so the same
// source compiles to zmm/ymm/xmm FMAs (-march=native, or the portable x86-64-v2 fallback).
// A micro-tile is kMR rows x kNV vectors of columns, held in kMR * kNV accumulators. With
// AVX-512 it is 8 x 3 zmm: 24 accumulators + 3 B vectors + the broadcast A element = 28 of
// the 32 registers. Measured on this machine's Xeon (one core, cached operands, CPU time):
// 8x3 runs at the FMA peak, 6x4 and 12x2 at about 92 %, 8x2 at 78 %. With 16 vector
// registers (AVX2, SSE) the tile is 6 x 2.
//
// Layout conventions (all row-major, element strides):
//   A  [Mp, K] with row stride lda; Mp a multiple of kMR (callers zero-pad the tail rows).
//      With kTransA, A is read from its transpose: element (r, k) at A[k * lda + r]; the
//      kMR elements a k-step broadcasts are then adjacent (backward: dW2 += dz^T @ h reads
//      dz [M, D] in place, no transposed copy).
//   B  [K, Np], either a plain matrix with row stride ldb, or "packed": column panels of
//      kNR columns (the last one narrower, a whole number of vectors), panel p stored
//      contiguously at B + p * kNR * K with its own width as row stride (pack_panel).
//   C  [Mp, Np] with row stride ldc. Np is a multiple of the vector width kLanes.
#pragma once
#include <cstdint>
#include <algorithm>
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

// C[kMR, NV vectors] (= or +=) A[kMR, K] * B[K, NV vectors].
template <typename T, int NV, bool kAccumulate, bool kTransA>
inline void micro_kernel(int64_t K, const T* __restrict A, int64_t lda, const T* __restrict B,
                         int64_t ldb, T* __restrict C, int64_t ldc) {
  constexpr int L = kLanes<T>;
  Vec<T> c[kMR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < kMR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) c[r][v] = kAccumulate ? vload(C + r * ldc + v * L) : Vec<T>{};
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
    for (int v = 0; v < NV; ++v) vstore(C + r * ldc + v * L, c[r][v]);
}

// C[Mp, Np] (= or +=) A[Mp, K] * B[K, Np]; see the layout conventions above.
// Row blocks outside, column panels inside: the kMR rows of A (kMR * K elements) stay in L1
// while the panels of B stream from L2, where the packed W2 (at most a few MB) stays.
template <typename T, bool kAccumulate, bool kTransA = false>
void gemm(int64_t Mp, int64_t Np, int64_t K, const T* A, int64_t lda, const T* B, bool packed,
          int64_t ldb, T* C, int64_t ldc) {
  constexpr int L = kLanes<T>, NR = kNR<T>;
  const int64_t full = Np / NR * NR, rest = (Np - full) / L;  // rest: 0 .. kNV - 1 vectors
  for (int64_t m = 0; m < Mp; m += kMR) {
    const T* Am = kTransA ? A + m : A + m * lda;
    T* Cm = C + m * ldc;
    for (int64_t n0 = 0; n0 < full; n0 += NR)
      micro_kernel<T, kNV, kAccumulate, kTransA>(K, Am, lda, packed ? B + n0 * K : B + n0,
                                                 packed ? NR : ldb, Cm + n0, ldc);
    const T* Bp = packed ? B + full * K : B + full;
    if (rest == 1)
      micro_kernel<T, 1, kAccumulate, kTransA>(K, Am, lda, Bp, packed ? L : ldb, Cm + full, ldc);
    if constexpr (kNV > 2)
      if (rest == 2)
        micro_kernel<T, 2, kAccumulate, kTransA>(K, Am, lda, Bp, packed ? 2 * L : ldb, Cm + full, ldc);
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
