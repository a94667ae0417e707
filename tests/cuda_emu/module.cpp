// The message_attention CUDA entry points, compiled for the CPU emulation (cuda_emulation.h).
#include <pybind11/pybind11.h>

#include "cuda/message_attention_cuda.h"
#include "ma_args.h"

namespace py = pybind11;

PYBIND11_MODULE(rstg_fast_cuda_emu, m) {
  m.def("message_attention_forward_cuda",
        &rstg::call_with_fields<rstg::message_attention_forward_cuda>, py::arg("fields"));
  m.def("message_attention_backward_cuda",
        &rstg::call_with_fields<rstg::message_attention_backward_cuda>, py::arg("fields"));
}
