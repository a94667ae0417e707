"""Data-parallel plumbing shared by the training commands: ``torchrun`` process group, one
GPU per process, sums over ranks."""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the ``torchrun`` process group if launched by it (``WORLD_SIZE > 1``): gloo on
    CPU, nccl on CUDA. A plain ``python`` run is a world of one and creates no group.

    Returns the ranks and the device this process uses: on CUDA, GPU ``LOCAL_RANK`` when
    launched by ``torchrun`` or when ``device`` names no index (made the current device
    before the group starts, so NCCL binds that GPU); otherwise ``device`` itself.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if world > 1 or device.index is None:
            device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if world <= 1:
        return DistInfo(), device
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local), device


def shutdown_distributed(failed: bool = False) -> None:
    """Leave the process group, if any (a clean exit; torchrun otherwise may see an abort).

    Objects still holding the group (a DDP wrapper caught in a reference cycle, say) are
    collected first, while the group is alive: freed later, at interpreter exit, their gloo
    work aborted the process now and then ("terminate called without an active exception",
    about one run in ten of the two-process test on a loaded machine).

    ``failed``: this rank is leaving on an exception. Then there is no barrier: the other
    ranks may be inside another collective (or past the point that raised here) and the
    barrier would hang both until gloo's 30-minute timeout, with the error never printed;
    leaving at once lets torchrun see the failure and stop the other ranks.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    gc.collect()
    if not failed:
        dist.barrier()
        dist.destroy_process_group()
        return
    # Leaving on an error (this runs in a `finally`): nothing here may hide that error or
    # block. gloo tears down at once (tested); NCCL may wait on a collective another rank
    # still has in flight, so its group is left for the exiting process to drop.
    if dist.get_backend() == "gloo":
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - the original error is the one to report
            pass


@contextlib.contextmanager
def leaving_distributed() -> Iterator[None]:
    """The body of a training command: on its way out, however it ends, leave the process
    group (``shutdown_distributed``), with the closing barrier on a normal exit (early
    returns included) and at once on an exception, which is then re-raised."""
    try:
        yield
    except BaseException:
        shutdown_distributed(failed=True)  # no barrier: the other ranks may never reach it
        raise
    shutdown_distributed()


def barrier() -> None:
    """Wait for every rank (nothing without a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a few numbers over ranks, in float64 on ``device`` (a copy of ``values`` when no
    process group is running)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()
