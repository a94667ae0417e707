"""The build: what build_info reports, lazy imports, and the README/CI command agreement."""

import os
import subprocess
import sys
from pathlib import Path

import rstg_fast

ROOT = Path(__file__).resolve().parents[1]


def test_build_info_reports_the_cpu_extension():
    info = rstg_fast.build_info()
    assert {"cpu", "cuda", "cuda_archs"} <= set(info)
    assert info["cpu"] is True, "the C++ CPU kernels are always built by pip install ."
    assert isinstance(info["cuda_archs"], list)
    if info["cuda"]:
        assert {80, 90} <= set(info["cuda_archs"])
    else:
        assert info["cuda_archs"] == []
    assert info["cpu_vector_bytes"] in (16, 32, 64)
    if info["cpu_isa"] == "x86-64-v2":
        assert info["cpu_vector_bytes"] in (16, 32)  # 32 only with extra -mavx flags (CI's AVX2 build)
    # .ci/narrow_cpu_builds.sh runs the cpu tests on builds for narrower vectors: this makes
    # sure the tests ran on the build it meant, not on another rstg_fast found first.
    expected = os.environ.get("RSTG_EXPECT_CPU_VECTOR_BYTES")
    if expected:
        assert info["cpu_vector_bytes"] == int(expected), (rstg_fast.__file__, info)


def test_import_is_lazy():
    code = (
        "import sys, rstg_fast; "
        "assert 'triton' not in sys.modules, 'triton imported'; "
        "assert 'rstg_fast._C' not in sys.modules, 'extension loaded at import'; "
        "import torch; assert not torch.cuda.is_initialized()"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    marker = "  # README-TEST-COMMAND"
    ci_cmd = [l.removesuffix(marker) for l in (ROOT / ".ci" / "run").read_text().splitlines() if l.endswith(marker)]
    assert len(ci_cmd) == 1, "exactly one line of .ci/run carries the README test command"
    assert ci_cmd[0] in readme, f"README must contain CI's test command {ci_cmd[0]!r}"


def test_readme_python_examples_run():
    import re

    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert len(blocks) >= 2
    namespace: dict = {}
    for block in blocks:  # later blocks reuse names of earlier ones, as a reader would
        exec(compile(block, "README.md", "exec"), namespace)
    assert tuple(namespace["y"].shape) == (2, 128)
    assert tuple(namespace["O"].shape) == (16, 14, 64)
