// CPU kernels of message_attention (docs/design.md section 2), for float32 and float64.
// Arguments: the one named-field struct MaArgs shared with the CUDA entry points
// (message_attention_args.h). Fields read: dtype (float32 or float64: every floating buffer,
// lse included), G, N, E, Hd, D, A, heads, scale, S, R, Q, K, W2, b2 (null for one send
// layer, then D == Hd), indptr, indices, threads (the OpenMP thread count; the Python side
// passes torch.get_num_threads()); forward: O, lse (written); backward: dO, O, lse, and the
// outputs dS, dR, dQ, dK, dW2, db2. Outputs are fully written (no need to zero them).
#pragma once
#include "message_attention_args.h"

namespace rstg {

void message_attention_forward_cpu(const MaArgs& args);
void message_attention_backward_cpu(const MaArgs& args);

// Bytes in one vector of the CPU kernels' build (64 AVX-512, 32 AVX/AVX2, 16 otherwise):
// which micro-kernel code path (8 x 3 or 6 x 2 vectors) this build runs.
int cpu_vector_bytes();

}  // namespace rstg
