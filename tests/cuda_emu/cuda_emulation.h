// A small CPU emulation of the CUDA features the message_attention kernels use, so that the
// very same kernel source runs (slowly) on a machine without a GPU, under the host compiler.
//
// Not a CUDA implementation: it covers exactly what csrc/cuda/message_attention_*.cu use.
// - A launch runs blocks one after another; each block runs blockDim.x std::threads that
//   share the block's dynamic shared memory; __syncthreads is a std::barrier over the block,
//   __shfl_xor_sync exchanges through a per-warp buffer and barrier (all 32 lanes must call
//   it, as on the GPU).
// - WMMA fragments hold the whole tile in every lane (element x[r * cols + c] of the logical
//   tile); load_matrix_sync honours row/col-major layouts and leading dimensions exactly as
//   documented, and additionally asserts the alignment rules (32-byte pointers, 16-byte
//   leading dimensions) that the GPU requires; store_matrix_sync writes from lane 0 only.
//   mma_sync accumulates in float; tf32 operands are truncated to tf32 as the hardware does.
// - atomicAdd on float uses std::atomic_ref; __trap aborts.
// Built by tests/cuda_emu/build.sh into rstg_fast_cuda_emu*.so, used by
// tests/ops/test_cuda_emulation.py.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __launch_bounds__
#undef __shared__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(n)

namespace rstg {
namespace emu {

struct Idx {
  unsigned x = 0, y = 0, z = 0;
};

struct Block {
  explicit Block(unsigned threads, size_t smem_bytes)
      : bar(threads),
        smem(static_cast<char*>(::operator new(smem_bytes + 128, std::align_val_t(128)))) {
    std::memset(smem, 0xA5, smem_bytes + 128);  // garbage, as on the GPU
    for (unsigned w = 0; w < (threads + 31) / 32; ++w)
      warp_bars.emplace_back(std::make_unique<std::barrier<>>(32));
    shfl.resize(((threads + 31) / 32) * 32);
  }
  ~Block() { ::operator delete(smem, std::align_val_t(128)); }
  std::barrier<> bar;
  char* smem;
  std::vector<std::unique_ptr<std::barrier<>>> warp_bars;
  std::vector<float> shfl;
};

inline thread_local Idx tid, bid, bdim, gdim;
inline thread_local Block* block = nullptr;

template <typename K>
struct Launch {
  K kernel;
  unsigned grid, threads;
  size_t smem;
  template <typename... A>
  void operator()(A... args) const {
    if (threads % 32) throw std::runtime_error("emulation: block size must be a multiple of 32");
    for (unsigned b = 0; b < grid; ++b) {
      Block blk(threads, smem);
      std::vector<std::thread> pool;
      pool.reserve(threads);
      for (unsigned t = 0; t < threads; ++t) {
        pool.emplace_back([&, t, b] {
          tid = Idx{t, 0, 0};
          bid = Idx{b, 0, 0};
          bdim = Idx{threads, 1, 1};
          gdim = Idx{grid, 1, 1};
          block = &blk;
          kernel(args...);
        });
      }
      for (auto& th : pool) th.join();
    }
  }
};

template <typename K>
Launch<K> make_launch(K kernel, unsigned grid, unsigned threads, size_t smem) {
  return Launch<K>{kernel, grid, threads, smem};
}

}  // namespace emu
}  // namespace rstg

#define threadIdx ::rstg::emu::tid
#define blockIdx ::rstg::emu::bid
#define blockDim ::rstg::emu::bdim
#define gridDim ::rstg::emu::gdim
#define RSTG_DYNAMIC_SMEM(name) char* name = ::rstg::emu::block->smem
#define RSTG_LAUNCH(kernel, grid, threads, smem, stream) \
  ((void)(stream),                                       \
   ::rstg::emu::make_launch(kernel, unsigned(grid), unsigned(threads), size_t(smem)))
#define RSTG_CUDA_CHECK(expr) (void)0
#define RSTG_CUDA_CHECK_LAUNCH(name) (void)(name)

inline void __syncthreads() { ::rstg::emu::block->bar.arrive_and_wait(); }
inline void __trap() {
  std::fprintf(stderr, "emulation: __trap() in block %u thread %u\n", blockIdx.x, threadIdx.x);
  std::abort();
}
inline float __shfl_xor_sync(unsigned, float v, int offset) {
  auto* b = ::rstg::emu::block;
  const unsigned lane = threadIdx.x & 31, warp = threadIdx.x / 32;
  auto& bar = *b->warp_bars[warp];
  b->shfl[warp * 32 + lane] = v;
  bar.arrive_and_wait();
  const float r = b->shfl[warp * 32 + (lane ^ unsigned(offset))];
  bar.arrive_and_wait();
  return r;
}
inline float atomicAdd(float* p, float v) { return std::atomic_ref<float>(*p).fetch_add(v); }
using std::max;
using std::min;

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
namespace precision {
struct tf32 {};
}  // namespace precision
enum layout_t { mem_row_major, mem_col_major };

inline float __float_to_tf32(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) {  // finite: round to nearest (ties away), keep 10 bits
    u += 0x1000u;
    u &= ~0x1fffu;
  }
  std::memcpy(&x, &u, 4);
  return x;
}
inline float tf32_truncate(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u &= ~0x1fffu;
  std::memcpy(&x, &u, 4);
  return x;
}

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static constexpr int rows = std::is_same_v<Use, matrix_b> ? K : M;
  static constexpr int cols = std::is_same_v<Use, matrix_a> ? K : N;
  static constexpr int num_elements = rows * cols;
  using storage = std::conditional_t<std::is_same_v<T, precision::tf32>, float, T>;
  storage x[num_elements];
};

inline void check_alignment(const void* p, unsigned ldm, size_t elem, const char* what) {
  if (reinterpret_cast<uintptr_t>(p) % 32 != 0 || (ldm * elem) % 16 != 0) {
    std::fprintf(stderr, "emulation: misaligned WMMA %s (pointer %p, ldm %u)\n", what, p, ldm);
    std::abort();
  }
}

template <typename Use, int M, int N, int K, typename T, typename Layout, typename P>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const P* p, unsigned ldm) {
  using F = fragment<Use, M, N, K, T, Layout>;
  check_alignment(p, ldm, sizeof(P), "load");
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c)
      f.x[r * F::cols + c] =
          std::is_same_v<Layout, row_major> ? p[size_t(r) * ldm + c] : p[size_t(c) * ldm + r];
}

template <int M, int N, int K>
void load_matrix_sync(fragment<accumulator, M, N, K, float>& f, const float* p, unsigned ldm,
                      layout_t l) {
  check_alignment(p, ldm, 4, "accumulator load");
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c)
      f.x[r * N + c] = l == mem_row_major ? p[size_t(r) * ldm + c] : p[size_t(c) * ldm + r];
}

template <int M, int N, int K>
void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ldm,
                       layout_t l) {
  check_alignment(p, ldm, 4, "store");
  // Warp-collective like the real one: every lane's earlier loads are done before the store,
  // and no lane goes on before it is complete. One writer (all lanes hold the same tile).
  auto& bar = *::rstg::emu::block->warp_bars[threadIdx.x / 32];
  bar.arrive_and_wait();
  if ((threadIdx.x & 31) == 0)
    for (int r = 0; r < M; ++r)
      for (int c = 0; c < N; ++c)
        (l == mem_row_major ? p[size_t(r) * ldm + c] : p[size_t(c) * ldm + r]) = f.x[r * N + c];
  bar.arrive_and_wait();
}

template <int M, int N, int K>
void fill_fragment(fragment<accumulator, M, N, K, float>& f, float v) {
  for (auto& e : f.x) e = v;
}

template <typename T>
float operand(T v) {
  if constexpr (std::is_same_v<T, float>)
    return tf32_truncate(v);
  else
    return float(v);
}

template <int M, int N, int K, typename T, typename LA, typename LB>
void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, T, LA>& a,
              const fragment<matrix_b, M, N, K, T, LB>& b,
              const fragment<accumulator, M, N, K, float>& c) {
  fragment<accumulator, M, N, K, float> out;
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float s = c.x[i * N + j];
      for (int k = 0; k < K; ++k) s += operand(a.x[i * K + k]) * operand(b.x[k * N + j]);
      out.x[i * N + j] = s;
    }
  d = out;
}

}  // namespace wmma
}  // namespace nvcuda
