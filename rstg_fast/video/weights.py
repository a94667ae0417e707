"""Load 2D ImageNet-style ResNet-50 weights into C2D, inflate them into I3D.

The file is a ``state_dict`` with torchvision's ResNet-50 key names (``conv1.weight``,
``layer1.0.conv1.weight``, ``layer1.0.downsample.0.weight``, ``fc.weight`` ...), loaded with
``torch.load(..., weights_only=True)`` (never unpickled). A 4-D conv weight
``(out, in, kh, kw)`` goes into a 5-D one ``(out, in, kt, kh, kw)``:

* ``kt == 1`` (every C2D conv): a reshape, so C2D on each frame *is* the 2D network;
* ``kt > 1`` (I3D's inflated convs), ``inflate="mean"`` (Carreira & Zisserman): the 2D
  kernel repeated over time and divided by ``kt``, so a temporally constant clip gives the
  2D response away from the clip's first/last frames (where zero temporal padding cuts
  in); ``inflate="center"``: the 2D kernel in the central slice, zeros elsewhere, so the
  I3D net starts as exactly the C2D net on every frame.

5-D source weights of the same shape (e.g. Kinetics-pretrained I3D converted to these
names) are copied as they are; 5-D weights with ``kt == 1`` are inflated like 2-D ones.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from rstg_fast._checkpoint import load_checkpoint

INFLATE_MODES = ("mean", "center")
_MAX_LISTED = 25


class WeightLoadError(ValueError):
    """The state_dict does not fit the model; the message lists every offending key."""


@dataclass
class LoadReport:
    """What :func:`load_resnet_weights` did, key by key."""

    copied: list[str] = field(default_factory=list)
    inflated: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # e.g. fc.* when the class count differs
    ignored: list[str] = field(default_factory=list)  # unexpected keys when strict=False


def read_state_dict(source: str | os.PathLike | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` from a path (weights_only load) or a mapping.

    Unwraps ``{"state_dict": ...}`` / ``{"model": ...}`` containers and a ``module.``
    prefix common to every key (DataParallel/DDP checkpoints).
    """
    if isinstance(source, (str, os.PathLike)):  # a damaged file: a CheckpointError naming it
        obj = load_checkpoint(source, what="weights file", advice="check or convert it again (docs/video.md)")
    else:
        obj = source
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping):
        raise WeightLoadError(f"expected a state_dict (a mapping of names to tensors), got {type(obj).__name__}")
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def inflate_weight(w2d: torch.Tensor, kt: int, mode: str = "mean") -> torch.Tensor:
    """``(out, in, kh, kw) -> (out, in, kt, kh, kw)`` by ``mode`` (see module docstring)."""
    if mode not in INFLATE_MODES:
        raise ValueError(f"inflate must be one of {INFLATE_MODES}, got {mode!r}")
    if w2d.dim() != 4:
        raise ValueError(f"w2d must be a 4-D conv weight, got shape {tuple(w2d.shape)}")
    w = w2d.unsqueeze(2)
    if kt == 1:
        return w.clone()
    if mode == "mean":
        return w.repeat(1, 1, kt, 1, 1) / kt
    out = torch.zeros(*w2d.shape[:2], kt, *w2d.shape[2:], dtype=w2d.dtype)
    out[:, :, kt // 2] = w2d
    return out


def _fmt(keys: list[str]) -> str:
    more = len(keys) - _MAX_LISTED
    return "\n    ".join(keys[:_MAX_LISTED] + ([f"... and {more} more"] if more > 0 else []))


def load_resnet_weights(
    model: nn.Module,
    source: str | os.PathLike | Mapping[str, torch.Tensor],
    *,
    inflate: str = "mean",
    load_fc: bool | None = None,
    strict: bool = True,
) -> LoadReport:
    """Copy/inflate a ResNet state_dict into ``model``'s trunk (RSTG blocks untouched).

    Args:
        model: a :class:`~rstg_fast.video.model.VideoClassifier` (or trunk).
        source: path to a ``torch.save``'d state_dict, or the mapping itself.
        inflate: ``"mean"`` or ``"center"``, for convs with a temporal kernel > 1.
        load_fc: load ``fc.*``; ``None`` loads it only when the shapes match (an ImageNet
            1000-way fc is skipped for a 174-way model), ``True`` demands it.
        strict: raise on keys of the file the model lacks (besides ``fc.*``).

    Raises:
        WeightLoadError: listing missing keys, mismatched shapes and, if ``strict``,
            unexpected keys. Nothing is written to ``model`` when it raises.
    """
    if inflate not in INFLATE_MODES:
        raise ValueError(f"inflate must be one of {INFLATE_MODES}, got {inflate!r}")
    src = read_state_dict(source)
    target = {
        k: v for k, v in model.state_dict().items() if not k.startswith(("graphs.", "vec_graph."))
    }
    report, staged = LoadReport(), {}
    missing, mismatched = [], []
    for key, dst in target.items():
        is_fc = key.startswith("fc.")
        if is_fc and load_fc is False:
            report.skipped.append(key)
            continue
        if key not in src:
            # num_batches_tracked is absent from old checkpoints and carries no weights.
            if key.endswith("num_batches_tracked") or (is_fc and not load_fc):
                report.skipped.append(key)
            else:
                missing.append(key)
            continue
        w = src[key]
        if w.shape == dst.shape:
            staged[key] = w
            report.copied.append(key)
        elif dst.dim() == 5 and w.dim() in (4, 5) and (w.dim() == 4 or w.shape[2] == 1) \
                and w.shape[:2] == dst.shape[:2] and w.shape[-2:] == dst.shape[-2:]:
            staged[key] = inflate_weight(w.reshape(*w.shape[:2], *w.shape[-2:]), dst.shape[2], inflate)
            report.inflated.append(key)
        elif is_fc and load_fc is None:
            report.skipped.append(key)
        else:
            mismatched.append(f"{key}: file {tuple(w.shape)} vs model {tuple(dst.shape)}")
    unexpected = sorted(k for k in src if k not in target and not k.startswith("fc."))
    if not strict:
        report.ignored, unexpected = unexpected, []
    if missing or mismatched or unexpected:
        parts = [f"state_dict does not fit the {type(model).__name__} trunk:"]
        for title, keys in (("missing keys", missing), ("shape mismatches", mismatched),
                            ("unexpected keys (strict=True)", unexpected)):
            if keys:
                parts.append(f"  {len(keys)} {title}:\n    {_fmt(keys)}")
        raise WeightLoadError("\n".join(parts))
    with torch.no_grad():
        params = model.state_dict()
        for key, w in staged.items():
            params[key].copy_(w.to(params[key].dtype))
    return report
