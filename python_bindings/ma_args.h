// MaArgs (csrc/message_attention_args.h) from a Python dict {name: int or float}, for the
// module and the tests' CUDA emulation module (call_with_fields). Addresses cross as
// integers. A missing required field or an unknown name is a ValueError naming it (a misspelt
// field must never become a silent null). Needs the GIL.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "message_attention_args.h"

namespace rstg {

inline MaArgs ma_args_from_dict(const pybind11::dict& fields) {
  namespace py = pybind11;
  // The field names as interned Python strings, made once: a lookup is then a pointer hash.
  static std::vector<PyObject*> keys = [] {
    std::vector<PyObject*> out;
    MaArgs scratch;
    for_each_field(scratch, [&](const char* name, auto&, bool) {
      out.push_back(PyUnicode_InternFromString(name));
    });
    return out;
  }();
  MaArgs a;
  size_t i = 0, found = 0;
  for_each_field(a, [&](const char* name, auto& field, bool required) {
    PyObject* value = PyDict_GetItem(fields.ptr(), keys[i++]);  // borrowed
    if (value == nullptr) {
      if (required)
        throw py::value_error(std::string("message_attention: missing argument '") + name + "'");
      return;
    }
    ++found;
    using F = std::remove_reference_t<decltype(field)>;
    if constexpr (std::is_pointer_v<F>)
      field = reinterpret_cast<F>(py::cast<std::uintptr_t>(value));
    else
      field = py::cast<F>(value);
  });
  if (found != size_t(PyDict_Size(fields.ptr()))) {
    for (auto item : fields) {
      bool known = false;
      for (PyObject* key : keys)
        known = known || PyObject_RichCompareBool(item.first.ptr(), key, Py_EQ) == 1;
      if (!known)
        throw py::value_error("message_attention: unknown argument '" +
                              py::str(item.first).cast<std::string>() + "'");
    }
  }
  return a;
}

// An entry point as a Python function of one dict: the fields are read with the GIL, the
// kernels run without it.
template <void (*entry)(const MaArgs&)>
void call_with_fields(const pybind11::dict& fields) {
  const MaArgs args = ma_args_from_dict(fields);
  pybind11::gil_scoped_release release;
  entry(args);
}

}  // namespace rstg
