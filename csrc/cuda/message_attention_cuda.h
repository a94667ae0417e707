// Entry points of the fused message_attention CUDA kernels (docs/design.md §2).
//
// Arguments cross as a name -> int64 map (device addresses as integers, sizes, flags) so the
// pybind11 module stays one line per entry point and a missing or misspelt field is a clear
// error instead of a shifted positional argument. rstg_fast/ops/backends/cuda.py owns
// allocation and fills the map; the launchers check every limit before any launch and throw
// std::invalid_argument (Python ValueError) for shapes the kernels do not support.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>

namespace rstg {

using MaArgs = std::unordered_map<std::string, int64_t>;

#ifdef RSTG_WITH_CUDA
// Fields: see message_attention_forward.cu (top comment). Asynchronous on args["stream"].
void message_attention_forward_cuda(const MaArgs& args, double scale);
// Fields: see message_attention_backward.cu (top comment). Asynchronous on args["stream"].
void message_attention_backward_cuda(const MaArgs& args, double scale);
#endif

}  // namespace rstg
