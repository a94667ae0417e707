// Register-blocked GEMM micro-kernel for the per-edge products of message_attention.
//
// One template over the element type. Vectors are GCC/Clang generic vectors of the widest
// width the build targets (64 bytes with AVX-512, 32 with AVX, 16 otherwise), so the same
// source compiles to zmm/ymm/xmm FMAs (-march=native, or the portable x86-64-v2 fallback).
// A micro-tile is kMR rows x kNR = kNV vectors of columns, held in kMR * kNV accumulators:
// with AVX-512, 6 x 4 zmm = 24 of the 32 registers, plus the 4 B vectors and the broadcast
// A element, so nothing spills (measured on this machine's Xeon, one core, cached data:
// 6x4 ~ 8x3 > 12x2 ~ 14x2 > 8x2; 6x4 keeps D = 256/512 free of column padding).
// With 16 vector registers (AVX2, SSE) the tile is 6 x 2.
// Layout conventions (all row-major, element strides):
//   A  [Mp, K]  with row stride lda; Mp a multiple of MR (callers zero-pad the tail rows).
//   B  "panels": panel p (columns p*NR .. p*NR+NR) starts at B + p*panel_stride and its
//      row k at + k*ldb. Packed weights use ldb = NR, panel_stride = K*NR; a plain row-major
//      matrix of width Np uses ldb = Np, panel_stride = NR.
//   C  [Mp, Np] with row stride ldc; Np a multiple of NR.
#pragma once
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
constexpr int kNV = kVecBytes == 64 ? 4 : 2;  // vectors across a micro-tile
template <typename T>
constexpr int kNR = kNV * kLanes<T>;  // columns of a micro-tile
constexpr int kMR = 6;                // rows of a micro-tile

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

// C[kMR, kNR] (= or +=) A[kMR, K] * B[K, kNR].
template <typename T, bool kAccumulate>
inline void micro_kernel(int64_t K, const T* __restrict A, int64_t lda, const T* __restrict B,
                         int64_t ldb, T* __restrict C, int64_t ldc) {
  constexpr int L = kLanes<T>;
  Vec<T> c[kMR][kNV];
#pragma GCC unroll 8
  for (int r = 0; r < kMR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < kNV; ++v) c[r][v] = kAccumulate ? vload(C + r * ldc + v * L) : Vec<T>{};
  for (int64_t k = 0; k < K; ++k) {
    Vec<T> b[kNV];
#pragma GCC unroll 4
    for (int v = 0; v < kNV; ++v) b[v] = vload(B + k * ldb + v * L);
#pragma GCC unroll 8
    for (int r = 0; r < kMR; ++r) {
      const T a = A[r * lda + k];
#pragma GCC unroll 4
      for (int v = 0; v < kNV; ++v) c[r][v] += a * b[v];  // one FMA (-ffp-contract=fast, GCC's default)
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < kMR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < kNV; ++v) vstore(C + r * ldc + v * L, c[r][v]);
}

// C[Mp, Np] (= or +=) A[Mp, K] * B[K, Np]; see the layout conventions above.
// Row blocks outside, column panels inside: the MR rows of A (MR * K elements) stay in L1
// while the B panels stream from L2, where the packed W2 (at most a few MB) lives.
template <typename T, bool kAccumulate>
void gemm(int64_t Mp, int64_t Np, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb,
          int64_t panel_stride, T* C, int64_t ldc) {
  constexpr int NR = kNR<T>;
  for (int64_t m = 0; m < Mp; m += kMR) {
    for (int64_t p = 0; p * NR < Np; ++p) {
      micro_kernel<T, kAccumulate>(K, A + m * lda, lda, B + p * panel_stride, ldb,
                                   C + m * ldc + p * NR, ldc);
    }
  }
}

// Packs panel p of the [rows, cols] row-major matrix W, read transposed or not, for gemm():
// out[p][k][v] = op(W)[k][p*NR + v], zero beyond op(W)'s columns.
//   transpose = true : op(W) = W^T, K = cols, panels across rows   (forward: h @ W2^T)
//   transpose = false: op(W) = W,   K = rows, panels across cols   (backward: dz @ W2)
// The whole packed matrix holds round_up(width, NR) * K elements; callers split the panels
// across threads.
template <typename T>
void pack_panel(const T* W, int64_t rows, int64_t cols, bool transpose, int64_t p, T* out) {
  constexpr int NR = kNR<T>;
  const int64_t K = transpose ? cols : rows;
  const int64_t width = transpose ? rows : cols;
  T* dst = out + p * K * NR;
  for (int64_t k = 0; k < K; ++k) {
    for (int v = 0; v < NR; ++v) {
      const int64_t n = p * NR + v;
      T value = T(0);
      if (n < width) value = transpose ? W[n * cols + k] : W[k * cols + n];
      dst[k * NR + v] = value;
    }
  }
}

}  // namespace rstg::cpu
