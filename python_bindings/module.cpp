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
#include "message_attention_cpu.h"

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
  m.attr("cpu_vector_bytes") = rstg::cpu_vector_bytes();
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
  // message_attention CPU kernels: addresses of contiguous buffers; W2/b2/dW2/db2 are 0
  // for one send layer. Sizes and the thread count are the caller's (rstg_fast/ops/backends/cpu.py).
  m.def(
      "message_attention_forward_cpu",
      [](bool is_double, std::uintptr_t S, std::uintptr_t R, std::uintptr_t Q, std::uintptr_t K,
         std::uintptr_t W2, std::uintptr_t b2, std::uintptr_t indptr, std::uintptr_t indices,
         int64_t G, int64_t N, int64_t Hd, int64_t A, int64_t D, int64_t heads, double scale,
         std::uintptr_t O, std::uintptr_t lse, int threads) {
        rstg::message_attention_forward_cpu(
            is_double, ptr<const void>(S), ptr<const void>(R), ptr<const void>(Q),
            ptr<const void>(K), ptr<const void>(W2), ptr<const void>(b2),
            ptr<const int64_t>(indptr), ptr<const int64_t>(indices), G, N, Hd, A, D, heads,
            scale, ptr<void>(O), ptr<void>(lse), threads);
      },
      py::call_guard<py::gil_scoped_release>());
  m.def(
      "message_attention_backward_cpu",
      [](bool is_double, std::uintptr_t dO, std::uintptr_t S, std::uintptr_t R,
         std::uintptr_t Q, std::uintptr_t K, std::uintptr_t W2, std::uintptr_t b2,
         std::uintptr_t indptr, std::uintptr_t indices, std::uintptr_t O, std::uintptr_t lse,
         int64_t G, int64_t N, int64_t Hd, int64_t A, int64_t D, int64_t heads, double scale,
         std::uintptr_t dS, std::uintptr_t dR, std::uintptr_t dQ, std::uintptr_t dK,
         std::uintptr_t dW2, std::uintptr_t db2, int threads) {
        rstg::message_attention_backward_cpu(
            is_double, ptr<const void>(dO), ptr<const void>(S), ptr<const void>(R),
            ptr<const void>(Q), ptr<const void>(K), ptr<const void>(W2), ptr<const void>(b2),
            ptr<const int64_t>(indptr), ptr<const int64_t>(indices), ptr<const void>(O),
            ptr<const void>(lse), G, N, Hd, A, D, heads, scale, ptr<void>(dS), ptr<void>(dR),
            ptr<void>(dQ), ptr<void>(dK), ptr<void>(dW2), ptr<void>(db2), threads);
      },
      py::call_guard<py::gil_scoped_release>());
  m.def("cpu_fma_peak_gflops", &rstg::cpu_fma_peak_gflops, py::arg("threads"),
        py::arg("seconds") = 0.5, py::call_guard<py::gil_scoped_release>());
  m.def("cpu_microkernel_gflops", &rstg::cpu_microkernel_gflops, py::arg("threads"),
        py::arg("seconds") = 0.5, py::arg("m") = 96, py::arg("k") = 512, py::arg("n") = 512,
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
