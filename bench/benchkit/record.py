"""The per-run record of ``pytest bench/ --bench-record=PATH``: one JSON object per line.

A benchmark session that is killed loses nothing it has finished: every case is appended
(one line, flushed and fsync'ed) as soon as its test ends, and ``--bench-resume`` skips the
cases already in the file. ``bench/report.py`` reads a record like a ``--benchmark-json``
file (``read_run`` turns it into one).

Lines, in order of writing:

- ``{"rstg_bench_record": 1, "settings": {...}, "machine_info": {...}, "commit_info": {...},
  "datetime": ...}``: the first line, once. ``settings`` are what a resumed session must
  share with the record (``SETTINGS``); the rest is what pytest-benchmark's JSON holds.
- ``{"benchmark": {...}}``: a measured case, exactly pytest-benchmark's JSON entry (group,
  name, fullname, param, stats, extra_info, options) without the per-round times.
- ``{"unmeasured": {...}}``: a case recorded without timings (out of memory), as in the
  JSON's ``rstg_unmeasured``.
- ``{"peaks": {...}}``: the peak rates measured so far (they are measured on first use, so
  after the header); later lines override earlier ones per dtype.

A kill while a line is written leaves at most one unterminated last line: readers ignore it
and the writer cuts it off before appending. Pure Python (no torch): report.py imports it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

FORMAT = 1
# setting -> what the user changes to get it (named in the refusal to mix records)
SETTINGS = {
    "commit": "the commit (git HEAD, +dirty with uncommitted changes, or RSTG_BENCH_COMMIT)",
    "device": "--bench-device",
    "device_name": "--bench-device (the device model)",
    "torch_threads": "the torch thread count (OMP_NUM_THREADS)",
    "bench_scale": "--bench-scale",
}


class RecordError(ValueError):
    """A record that cannot be read or resumed (the message names the file and the reason)."""


@dataclass
class Record:
    """What a record file holds; ``cases`` maps a case's pytest node id to its latest line."""

    header: dict
    cases: dict[str, dict] = field(default_factory=dict)  # fullname -> {"benchmark"|"unmeasured": entry}
    peaks: dict = field(default_factory=dict)


def _complete_lines(path: Path) -> tuple[list[bytes], int]:
    """The newline-terminated lines of ``path`` and the byte length they span (a torn
    last line, from a kill mid-write, is left out)."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    return data[:end].splitlines(), end


def read(path: str | os.PathLike) -> Record:
    """Parse a record; raises ``RecordError`` for a file that is not one or is corrupt."""
    path = Path(path)
    try:
        lines, _ = _complete_lines(path)
    except OSError as exc:
        raise RecordError(f"{path}: cannot read a benchmark record ({exc})") from None
    if not is_record(path):
        raise RecordError(f"{path}: not a `pytest bench/ --bench-record` file (its first line is no record header)")
    record = None
    for i, raw in enumerate(lines, 1):
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise RecordError(f"{path}:{i}: not a JSON line ({exc})") from None
        if record is None:
            if obj["rstg_bench_record"] != FORMAT:
                raise RecordError(f"{path}: record format {obj['rstg_bench_record']}, this suite reads {FORMAT}")
            record = Record(header=obj, peaks=dict(obj["machine_info"]["rstg"].get("peaks", {})))
        elif "peaks" in obj:
            record.peaks.update(obj["peaks"])
        elif "benchmark" in obj or "unmeasured" in obj:
            entry = obj.get("benchmark") or obj["unmeasured"]
            record.cases[entry["fullname"]] = obj
        else:
            raise RecordError(f"{path}:{i}: unknown line {sorted(obj)}")
    if record is None:  # a header torn by a kill: nothing was recorded
        raise RecordError(f"{path}: no complete record header (killed before its first case ended?)")
    return record


def started(path: str | os.PathLike) -> bool:
    """Whether ``path`` exists and holds a complete line (a record's header at least)."""
    try:
        return _complete_lines(Path(path))[1] > 0
    except FileNotFoundError:
        return False


def is_record(path: str | os.PathLike) -> bool:
    """Whether ``path`` starts with a record header (else it may be pytest-benchmark JSON)."""
    try:
        with open(path, "rb") as f:
            obj = json.loads(f.readline())
    except OSError as exc:
        raise RecordError(f"{path}: cannot read a benchmark record ({exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(obj, dict) and "rstg_bench_record" in obj


def mismatches(header: dict, settings: dict) -> list[str]:
    """Why a session with ``settings`` may not add to a record with ``header`` (empty: it may)."""
    recorded = header["settings"]
    return [
        f"{key} is {settings.get(key)!r} here but {recorded.get(key)!r} in the record (set by {SETTINGS[key]})"
        for key in SETTINGS
        if recorded.get(key) != settings.get(key)
    ]


def to_run(record: Record) -> dict:
    """The record as a ``--benchmark-json`` run: what ``bench/report.py`` reads."""
    header = record.header
    machine_info = json.loads(json.dumps(header["machine_info"]))
    machine_info["rstg"]["peaks"] = {**machine_info["rstg"].get("peaks", {}), **record.peaks}
    return {
        "machine_info": machine_info,
        "commit_info": header.get("commit_info", {}),
        "datetime": header.get("datetime"),
        "version": header.get("version"),
        "benchmarks": [line["benchmark"] for line in record.cases.values() if "benchmark" in line],
        "rstg_unmeasured": [line["unmeasured"] for line in record.cases.values() if "unmeasured" in line],
    }


def read_run(path: str | os.PathLike) -> dict:
    return to_run(read(path))


class Writer:
    """Appends lines to a record, each made durable (flush + fsync) before returning.

    ``header`` is written first when the file is new; an existing file is opened for
    appending after its torn last line, if any, is cut off.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._header_written = False
        if self.path.exists():
            _, end = _complete_lines(self.path)
            if end != self.path.stat().st_size:
                os.truncate(self.path, end)
            self._header_written = end > 0  # a header torn by a kill is written again
        self._last_peaks: dict | None = None

    def _append(self, obj: dict) -> None:
        line = json.dumps(obj, sort_keys=True, default=str) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def ensure_header(self, make_header) -> None:
        """Write ``make_header()`` unless the file already has its header (it is built
        lazily: pytest-benchmark's machine info takes a moment to gather)."""
        if not self._header_written:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._append(make_header())
            self._header_written = True

    def add(self, kind: str, entry: dict, peaks: dict | None = None) -> None:
        """One finished case (``kind``: ``benchmark`` or ``unmeasured``); ``peaks`` are the
        session's measured peak rates, written when they changed since the last line."""
        if peaks and peaks != self._last_peaks:
            self._append({"peaks": peaks})
            self._last_peaks = json.loads(json.dumps(peaks))
        self._append({kind: entry})


def header(settings: dict, machine_info: dict, commit_info: dict, datetime: str, version: str | None) -> dict:
    return {
        "rstg_bench_record": FORMAT,
        "settings": settings,
        "machine_info": machine_info,
        "commit_info": commit_info,
        "datetime": datetime,
        "version": version,
    }
