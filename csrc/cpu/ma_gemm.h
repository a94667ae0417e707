// Register-blocked GEMM micro-kernel for the per-edge products of message_attention.
//
// One template over the element type. Vectors are GCC/Clang generic vectors of the widest
// width the build targets (64 bytes with AVX-512, 32 with AVX, 16 otherwise), so the same
// source compiles to zmm/ymm/xmm FMAs (-march=native, or the portable x86-64-v2 fallback).
// A micro-tile is MR rows x NR = 2 vectors of columns, held in 2*MR accumulators: with
// AVX-512 and MR = 8 that is 16 of the 32 zmm registers, leaving room for the two B rows and
// the broadcast A element, so nothing spills.
//
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
template <typename T>
constexpr int kNR = 2 * kLanes<T>;  // columns of a micro-tile
// Rows of a micro-tile. 8 divides kNR for every type and width used, so one padding unit
// (kPad) serves both the row and the column dimension of every product.
constexpr int kMR = 8;
template <typename T>
constexpr int kPad = kNR<T> > kMR ? kNR<T> : kMR;

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

// C[MR, NR] (= or +=) A[MR, K] * B[K, NR].
template <typename T, bool kAccumulate>
inline void micro_kernel(int64_t K, const T* __restrict A, int64_t lda, const T* __restrict B,
                         int64_t ldb, T* __restrict C, int64_t ldc) {
  constexpr int L = kLanes<T>;
  Vec<T> c0[kMR], c1[kMR];
#pragma GCC unroll 16
  for (int r = 0; r < kMR; ++r) {
    if (kAccumulate) {
      c0[r] = vload(C + r * ldc);
      c1[r] = vload(C + r * ldc + L);
    } else {
      c0[r] = Vec<T>{};
      c1[r] = Vec<T>{};
    }
  }
  for (int64_t k = 0; k < K; ++k) {
    const Vec<T> b0 = vload(B + k * ldb);
    const Vec<T> b1 = vload(B + k * ldb + L);
#pragma GCC unroll 16
    for (int r = 0; r < kMR; ++r) {
      const T a = A[r * lda + k];
      c0[r] += a * b0;  // contracted to one FMA (-ffp-contract=fast, GCC's default)
      c1[r] += a * b1;
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < kMR; ++r) {
    vstore(C + r * ldc, c0[r]);
    vstore(C + r * ldc + L, c1[r]);
  }
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
