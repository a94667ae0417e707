// Entry points of the fused message_attention CUDA kernels (docs/design.md §2).
//
// Arguments cross as the one named-field struct MaArgs (message_attention_args.h), shared with
// the CPU entry points; rstg_fast/ops/backends/cuda/launch.py owns allocation and fills it. The
// launchers check every limit (cuda/ma_layout.h) before any launch and throw
// std::invalid_argument (Python ValueError) for shapes the kernels do not support.
#pragma once
#include "message_attention_args.h"

namespace rstg {

#ifdef RSTG_WITH_CUDA
// Fields read: see message_attention_forward.cu (top comment). Asynchronous on args.stream.
void message_attention_forward_cuda(const MaArgs& args);
// Fields read: see message_attention_backward.cu (top comment). Asynchronous on args.stream.
void message_attention_backward_cuda(const MaArgs& args);
#endif

}  // namespace rstg
