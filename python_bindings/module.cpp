// The pybind11 module rstg_fast._C: one m.def per kernel entry point, nothing else.
// Tensors cross as raw addresses (uintptr_t) so the module never links libtorch; the
// Python side (rstg_fast/_ext.py, rstg_fast/ops/backends/) owns allocation and checks.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "cpu/cpu_peak.h"
#include "cpu/message_attention_cpu.h"
#include "csr_check.h"
#include "cuda/ma_layout.h"
#include "cuda/message_attention_cuda.h"
#include "ma_args.h"

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
  // message_attention kernels: one dict of named fields (csrc/message_attention_args.h) each;
  // the CPU ones are filled by rstg_fast/ops/backends/cpu.py, the CUDA ones by cuda/launch.py.
  m.def("message_attention_forward_cpu",
        &rstg::call_with_fields<rstg::message_attention_forward_cpu>, py::arg("fields"));
  m.def("message_attention_backward_cpu",
        &rstg::call_with_fields<rstg::message_attention_backward_cpu>, py::arg("fields"));
  // The CUDA kernels' tile sizes and limits (csrc/cuda/ma_layout.h), on every build, for the
  // Python planner (rstg_fast/ops/backends/cuda/plan.py).
  {
    namespace ma = rstg::ma;
    py::dict limits;
    limits["threads"] = ma::kThreads;
    limits["tile_n"] = ma::kTN;
    limits["tile_k"] = ma::kTK;
    limits["graphs_per_task"] = ma::kBG;
    limits["chunk"] = ma::kChunk;
    limits["pad_bytes"] = ma::kPadBytes;
    limits["smem_cap"] = ma::kSmemCap;
    m.attr("cuda_limits") = limits;
    m.attr("dtype_codes") = py::dict(py::arg("float32") = int(rstg::kMaFloat32),
                                     py::arg("float16") = int(rstg::kMaFloat16),
                                     py::arg("bfloat16") = int(rstg::kMaBFloat16),
                                     py::arg("float64") = int(rstg::kMaFloat64));
    m.def(
        "cuda_smem_bytes",
        [](bool backward, int elem_size, int Hd, int D, int A, int heads, bool has_w2) {
          return ma::make_layout(backward, elem_size, Hd, D, A, heads, has_w2).total;
        },
        py::arg("backward"), py::arg("elem_size"), py::arg("Hd"), py::arg("D"), py::arg("A"),
        py::arg("heads"), py::arg("has_w2"));
    m.def(
        "cuda_check_launch_limits",
        [](int64_t G, int64_t N, int64_t E, int64_t Hd, int64_t D, int64_t A, int64_t heads,
           int elem_size, bool has_w2, const std::string& who) {
          ma::check_limits(ma::Dims{G, N, E, Hd, D, A, heads, has_w2}, elem_size, who.c_str());
        },
        py::arg("G"), py::arg("N"), py::arg("E"), py::arg("Hd"), py::arg("D"), py::arg("A"),
        py::arg("heads"), py::arg("elem_size"), py::arg("has_w2"), py::arg("who") = "launch");
  }
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
  m.def("message_attention_forward_cuda",
        &rstg::call_with_fields<rstg::message_attention_forward_cuda>, py::arg("fields"));
  m.def("message_attention_backward_cuda",
        &rstg::call_with_fields<rstg::message_attention_backward_cuda>, py::arg("fields"));
#endif
}
