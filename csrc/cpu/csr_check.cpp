#include "csr_check.h"

namespace rstg {

int64_t check_csr_cpu(const int64_t* indptr, const int64_t* indices, int64_t num_nodes,
                      int64_t num_edges, int64_t* where) {
  *where = 0;
  if (indptr[0] != 0) return kIndptrFirstNotZero;
  if (indptr[num_nodes] != num_edges) {
    *where = num_nodes;
    return kIndptrLastNotE;
  }
  for (int64_t i = 0; i < num_nodes; ++i) {
    if (indptr[i + 1] < indptr[i]) {
      *where = i;
      return kIndptrDecreasing;
    }
  }
  for (int64_t e = 0; e < num_edges; ++e) {
    if (indices[e] < 0 || indices[e] >= num_nodes) {
      *where = e;
      return kIndexOutOfRange;
    }
  }
  return kCsrOk;
}

}  // namespace rstg
