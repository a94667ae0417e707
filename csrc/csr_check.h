// Validation of a CSR-by-destination graph: indptr [N+1], indices [E], both int64.
// Returns -1 when the graph is valid; otherwise a code telling what is wrong (below) and
// writes the offending position to *where.
#pragma once
#include <cstdint>

namespace rstg {

enum CsrError : int64_t {
  kCsrOk = -1,
  kIndptrFirstNotZero = 0,  // indptr[0] != 0
  kIndptrLastNotE = 1,      // indptr[N] != E
  kIndptrDecreasing = 2,    // indptr[i+1] < indptr[i] at i = *where
  kIndexOutOfRange = 3,     // indices[e] outside [0, N) at e = *where
};

int64_t check_csr_cpu(const int64_t* indptr,   // [N+1]
                      const int64_t* indices,  // [E]
                      int64_t num_nodes, int64_t num_edges, int64_t* where);

#ifdef RSTG_WITH_CUDA
// Same checks on device memory; blocks on `stream` to read the result back.
int64_t check_csr_cuda(const int64_t* indptr,   // [N+1], device
                       const int64_t* indices,  // [E], device
                       int64_t num_nodes, int64_t num_edges, int64_t* where, void* stream);
#endif

}  // namespace rstg
