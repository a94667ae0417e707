#include <cstdint>

#include "csr_check.h"
#include "cuda/cuda_check.cuh"

namespace rstg {
namespace {

constexpr int kThreads = 256;

// slots[k] ends as the smallest failing position of error k (or INT64_MAX if none).
__global__ void csr_check_kernel(const int64_t* __restrict__ indptr,   // [N+1]
                                 const int64_t* __restrict__ indices,  // [E]
                                 int64_t num_nodes, int64_t num_edges,
                                 unsigned long long* __restrict__ slots) {  // [4]
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
       t < (num_nodes > num_edges ? num_nodes : num_edges); t += stride) {
    if (t == 0 && indptr[0] != 0) atomicMin(&slots[kIndptrFirstNotZero], 0ull);
    if (t == 0 && indptr[num_nodes] != num_edges)
      atomicMin(&slots[kIndptrLastNotE], (unsigned long long)num_nodes);
    if (t < num_nodes && indptr[t + 1] < indptr[t])
      atomicMin(&slots[kIndptrDecreasing], (unsigned long long)t);
    if (t < num_edges && (indices[t] < 0 || indices[t] >= num_nodes))
      atomicMin(&slots[kIndexOutOfRange], (unsigned long long)t);
  }
}

}  // namespace

int64_t check_csr_cuda(const int64_t* indptr, const int64_t* indices, int64_t num_nodes,
                       int64_t num_edges, int64_t* where, void* stream_handle) {
  auto stream = static_cast<cudaStream_t>(stream_handle);
  unsigned long long* slots = nullptr;
  RSTG_CUDA_CHECK(cudaMallocAsync(&slots, 4 * sizeof(unsigned long long), stream));
  RSTG_CUDA_CHECK(cudaMemsetAsync(slots, 0xff, 4 * sizeof(unsigned long long), stream));
  const int64_t work = num_nodes > num_edges ? num_nodes : num_edges;
  const int blocks = int((work + kThreads - 1) / kThreads < 1024 ? (work + kThreads - 1) / kThreads : 1024);
  csr_check_kernel<<<blocks > 0 ? blocks : 1, kThreads, 0, stream>>>(indptr, indices, num_nodes,
                                                                     num_edges, slots);
  RSTG_CUDA_CHECK_LAUNCH("csr_check_kernel");
  unsigned long long host[4];
  RSTG_CUDA_CHECK(cudaMemcpyAsync(host, slots, sizeof(host), cudaMemcpyDeviceToHost, stream));
  RSTG_CUDA_CHECK(cudaFreeAsync(slots, stream));
  RSTG_CUDA_CHECK(cudaStreamSynchronize(stream));
  *where = 0;
  for (int64_t code = kIndptrFirstNotZero; code <= kIndexOutOfRange; ++code) {
    if (host[code] != ~0ull) {
      *where = int64_t(host[code]);
      return code;
    }
  }
  return kCsrOk;
}

}  // namespace rstg
