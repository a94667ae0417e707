// The message_attention CUDA entry points, compiled for the CPU emulation (cuda_emulation.h).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "cuda/message_attention_cuda.h"

namespace py = pybind11;

PYBIND11_MODULE(rstg_fast_cuda_emu, m) {
  m.def("message_attention_forward_cuda", &rstg::message_attention_forward_cuda, py::arg("args"),
        py::arg("scale"), py::call_guard<py::gil_scoped_release>());
  m.def("message_attention_backward_cuda", &rstg::message_attention_backward_cuda, py::arg("args"),
        py::arg("scale"), py::call_guard<py::gil_scoped_release>());
}
