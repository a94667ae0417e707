// CPU kernels of message_attention (docs/design.md section 2), for float32 and float64.
// All tensors are contiguous row-major buffers owned by the caller; outputs are fully
// written (no need to zero them). `threads` is the OpenMP thread count (the Python side
// passes torch.get_num_threads()). W2/b2 are null for one send layer (then D == Hd).
// `is_double` selects float64 (all floating buffers, lse included) over float32.
#pragma once
#include <cstdint>

namespace rstg {

void message_attention_forward_cpu(bool is_double,
                                   const void* S,              // [G, N, Hd]
                                   const void* R,              // [G, N, Hd]
                                   const void* Q,              // [G, N, A]
                                   const void* K,              // [G, N, A]
                                   const void* W2,             // [D, Hd] or null
                                   const void* b2,             // [D] or null
                                   const int64_t* indptr,      // [N + 1]
                                   const int64_t* indices,     // [E]
                                   int64_t G, int64_t N, int64_t Hd, int64_t A, int64_t D,
                                   int64_t heads, double scale,
                                   void* O,                    // [G, N, D] out
                                   void* lse,                  // [G, N, heads] out
                                   int threads);

void message_attention_backward_cpu(bool is_double,
                                    const void* dO,             // [G, N, D]
                                    const void* S,              // [G, N, Hd]
                                    const void* R,              // [G, N, Hd]
                                    const void* Q,              // [G, N, A]
                                    const void* K,              // [G, N, A]
                                    const void* W2,             // [D, Hd] or null
                                    const void* b2,             // [D] or null
                                    const int64_t* indptr,      // [N + 1]
                                    const int64_t* indices,     // [E]
                                    const void* O,              // [G, N, D] forward output
                                    const void* lse,            // [G, N, heads] forward lse
                                    int64_t G, int64_t N, int64_t Hd, int64_t A, int64_t D,
                                    int64_t heads, double scale,
                                    void* dS,                   // [G, N, Hd] out
                                    void* dR,                   // [G, N, Hd] out
                                    void* dQ,                   // [G, N, A] out
                                    void* dK,                   // [G, N, A] out
                                    void* dW2,                  // [D, Hd] out, or null
                                    void* db2,                  // [D] out, or null
                                    int threads);

// Peak float32 FMA rate of this machine with `threads` threads: a register-only loop of
// independent vector FMAs (the widest vectors the build targets) run for about `seconds`.
double cpu_fma_peak_gflops(int threads, double seconds);

// Rate of the message_attention micro-kernel on cached data: every thread repeats the
// product of an [m, k] tile with a packed [k, n] panel set (as the forward's h @ W2^T) for
// about `seconds`. float32. FLOPs counted as 2 * m * n * k per product.
double cpu_microkernel_gflops(int threads, double seconds, int64_t m, int64_t k, int64_t n);

// Bytes in one vector of the CPU kernels' build (64 AVX-512, 32 AVX/AVX2, 16 otherwise):
// which micro-kernel code path (8 x 3 or 6 x 2 vectors) this build runs.
int cpu_vector_bytes();

}  // namespace rstg
