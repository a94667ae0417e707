// The pybind11 module rstg_fast._C: one m.def per kernel entry point, nothing else.
// Tensors cross as raw addresses (uintptr_t) so the module never links libtorch; the
// Python side (rstg_fast/_ext.py, rstg_fast/ops/backends/) owns allocation and checks.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "csr_check.h"
#include "cuda/message_attention_cuda.h"

namespace py = pybind11;

template <typename T>
static T* ptr(std::uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

static std::vector<int> cuda_archs() {
  std::vector<int> archs;
#ifdef RSTG_CUDA_ARCHS
  const char* s = RSTG_CUDA_ARCHS;
  int value = 0;
  bool any = false;
  for (; *s; ++s) {
    if (*s >= '0' && *s <= '9') {
      value = value * 10 + (*s - '0');
      any = true;
    } else if (any) {
      archs.push_back(value);
      value = 0;
      any = false;
    }
  }
  if (any) archs.push_back(value);
#endif
  return archs;
}

PYBIND11_MODULE(_C, m) {
  m.doc() = "rstg_fast compiled kernels (CPU always, CUDA when built)";

#ifdef RSTG_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
#ifdef RSTG_WITH_OPENMP
  m.attr("with_openmp") = true;
#else
  m.attr("with_openmp") = false;
#endif
  m.attr("cpu_isa") = RSTG_CPU_ISA;
  m.attr("cuda_archs") = cuda_archs();

  m.def(
      "check_csr_cpu",
      [](std::uintptr_t indptr, std::uintptr_t indices, int64_t n, int64_t e) {
        int64_t where = 0;
        const int64_t code = rstg::check_csr_cpu(ptr<const int64_t>(indptr),
                                                 ptr<const int64_t>(indices), n, e, &where);
        return std::make_pair(code, where);
      },
      py::arg("indptr"), py::arg("indices"), py::arg("num_nodes"), py::arg("num_edges"),
      py::call_guard<py::gil_scoped_release>());
#ifdef RSTG_WITH_CUDA
  m.def(
      "check_csr_cuda",
      [](std::uintptr_t indptr, std::uintptr_t indices, int64_t n, int64_t e,
         std::uintptr_t stream) {
        int64_t where = 0;
        const int64_t code =
            rstg::check_csr_cuda(ptr<const int64_t>(indptr), ptr<const int64_t>(indices), n, e,
                                 &where, reinterpret_cast<void*>(stream));
        return std::make_pair(code, where);
      },
      py::arg("indptr"), py::arg("indices"), py::arg("num_nodes"), py::arg("num_edges"),
      py::arg("stream"), py::call_guard<py::gil_scoped_release>());
  m.def("message_attention_forward_cuda", &rstg::message_attention_forward_cuda, py::arg("args"),
        py::arg("scale"), py::call_guard<py::gil_scoped_release>());
  m.def("message_attention_backward_cuda", &rstg::message_attention_backward_cuda, py::arg("args"),
        py::arg("scale"), py::call_guard<py::gil_scoped_release>());
#endif
}
