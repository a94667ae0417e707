"""Build driver: configures CMake (Ninja) and builds the pybind11 extension ``rstg_fast._C``.

Environment switches (all optional):
  RSTG_FAST_CUDA=0|1      force the CUDA kernels off, or on (1 without nvcc is an error);
                          unset: built when nvcc is found.
  RSTG_FAST_CUDA_ARCHS    semicolon list of SM versions, default "80;90".
  RSTG_FAST_NATIVE=0      build the CPU kernels for a portable x86-64-v2 baseline instead of
                          ``-march=native`` (use it for wheels that travel between machines).
  CMAKE_BUILD_TYPE        default Release.
  CMAKE_ARGS              extra arguments passed to the CMake configure step.
  CMAKE_BUILD_PARALLEL_LEVEL  parallel compile jobs.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name: str) -> None:
        super().__init__(name, sources=[])


def _cuda_switch() -> str:
    value = os.environ.get("RSTG_FAST_CUDA", "").strip()
    if value not in ("", "0", "1"):
        raise SystemExit(f"RSTG_FAST_CUDA must be 0, 1 or unset, got {value!r}")
    if value == "":
        return "ON" if shutil.which("nvcc") or os.environ.get("CUDACXX") else "OFF"
    if value == "1" and not (shutil.which("nvcc") or os.environ.get("CUDACXX")):
        raise SystemExit(
            "RSTG_FAST_CUDA=1 asks for the CUDA kernels, but nvcc was not found on PATH "
            "(and CUDACXX is not set). Install the CUDA toolkit or set RSTG_FAST_CUDA=0."
        )
    return "ON" if value == "1" else "OFF"


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        ext_dir = Path(self.get_ext_fullpath(ext.name)).parent.resolve()
        build_type = os.environ.get("CMAKE_BUILD_TYPE", "Release")
        build_temp = Path(self.build_temp) / ext.name
        build_temp.mkdir(parents=True, exist_ok=True)
        # pip builds in a fresh isolated env each time; a cache that names the previous env's
        # cmake/ninja/pybind11 would fail to configure. Objects are kept, so rebuilds stay quick.
        (build_temp / "CMakeCache.txt").unlink(missing_ok=True)
        import pybind11

        cmake_args = [
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={ext_dir}{os.sep}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DCMAKE_BUILD_TYPE={build_type}",
            f"-DRSTG_FAST_CUDA={_cuda_switch()}",
            f"-DRSTG_FAST_CUDA_ARCHS={os.environ.get('RSTG_FAST_CUDA_ARCHS', '80;90')}",
            f"-DRSTG_FAST_NATIVE={'OFF' if os.environ.get('RSTG_FAST_NATIVE') == '0' else 'ON'}",
            "-G",
            "Ninja",
        ]
        cmake_args += [a for a in os.environ.get("CMAKE_ARGS", "").split(" ") if a]
        build_args = ["--config", build_type]
        if "CMAKE_BUILD_PARALLEL_LEVEL" not in os.environ:
            build_args += [f"-j{os.cpu_count() or 2}"]

        subprocess.run(["cmake", str(ROOT), *cmake_args], cwd=build_temp, check=True)
        subprocess.run(["cmake", "--build", ".", *build_args], cwd=build_temp, check=True)


setup(ext_modules=[CMakeExtension("rstg_fast._C")], cmdclass={"build_ext": CMakeBuild})
