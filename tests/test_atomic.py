"""atomic_path: the target is replaced only by a complete file; failures leave no temp file."""

from __future__ import annotations

import os

import numpy as np
import pytest

from rstg_fast._atomic import atomic_path


def test_replaces_on_success_and_keeps_the_suffix(tmp_path):
    target = tmp_path / "a.npz"
    target.write_bytes(b"old")
    with atomic_path(target, suffix=".npz") as tmp:
        assert os.path.dirname(tmp) == str(tmp_path) and tmp.endswith(".npz") and ".tmp" in tmp
        np.savez(tmp, x=np.arange(3))  # np.savez would append .npz to a name without it
        assert target.read_bytes() == b"old"  # not replaced before the block ends
    with np.load(target, allow_pickle=False) as z:
        assert z["x"].tolist() == [0, 1, 2]
    assert os.listdir(tmp_path) == ["a.npz"]


@pytest.mark.parametrize("written", [True, False], ids=["half-written", "not-created"])
def test_failure_keeps_the_old_file_and_removes_the_temp(tmp_path, written):
    target = tmp_path / "metrics.jsonl"
    target.write_text("old\n")
    with pytest.raises(OSError, match="disk full"), atomic_path(target) as tmp:
        if written:
            with open(tmp, "w") as f:
                f.write("half")
        raise OSError("disk full")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["metrics.jsonl"]


def test_write_jsonl_is_strict_json(tmp_path):
    """Non-finite floats (a diverged loss) are written as null, never as the NaN / Infinity
    tokens that strict JSON parsers refuse (hardening #14 item 10)."""
    import json
    import math

    from rstg_fast._atomic import write_jsonl

    path = tmp_path / "metrics.jsonl"
    write_jsonl(path, [{"loss": float("nan"), "val": {"top1": float("inf"), "curve": [1.5, -math.inf]}, "n": 3}])

    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    rows = [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]
    assert rows == [{"loss": None, "val": {"top1": None, "curve": [1.5, None]}, "n": 3}]
