"""Where RSTG goes inside a video backbone: one description shared by model, CLI and docs.

The paper's I3D ablation has five rows; each is a :class:`Placement`:

=============  ==========================================  =====================
preset         meaning                                      ``Placement``
=============  ==========================================  =====================
``none``       the plain backbone (mean pool + fc)          ``maps=(), vec=False``
``vec``        RSTG-to-vec on the res5 output, fc on it     ``maps=(), vec=True``
``res2``       RSTG-to-map after res2                       ``maps=("res2",)``
``res3``       RSTG-to-map after res3                       ``maps=("res3",)``
``res4``       RSTG-to-map after res4 (the paper's C2D)     ``maps=("res4",)``
``res3-4``     RSTG-to-map after res3 and after res4        ``maps=("res3", "res4")``
=============  ==========================================  =====================

Any subset of ``res2..res5`` is accepted for the maps and may be combined with ``vec``
(``"res4+vec"``); the presets are only names for the paper's rows.
"""

from __future__ import annotations

from dataclasses import dataclass

STAGES: tuple[str, ...] = ("res2", "res3", "res4", "res5")

PRESETS: dict[str, tuple[tuple[str, ...], bool]] = {
    "none": ((), False),
    "vec": ((), True),
    "res2": (("res2",), False),
    "res3": (("res3",), False),
    "res4": (("res4",), False),
    "res3-4": (("res3", "res4"), False),
}


@dataclass(frozen=True)
class Placement:
    """RSTG positions in a ResNet video backbone.

    Attributes:
        maps: stages after which an RSTG-to-map block (``readout="map"``) is inserted,
            in network order, each at most once (subset of ``STAGES``).
        vec: if True the head is RSTG-to-vec on the res5 output followed by the
            classifier, instead of mean pooling + classifier.
    """

    maps: tuple[str, ...] = ()
    vec: bool = False

    def __post_init__(self) -> None:
        maps = tuple(self.maps)
        unknown = [m for m in maps if m not in STAGES]
        if unknown:
            raise ValueError(f"placement maps must be among {STAGES}, got {unknown}")
        if len(set(maps)) != len(maps):
            raise ValueError(f"placement maps must not repeat a stage, got {maps}")
        object.__setattr__(self, "maps", tuple(s for s in STAGES if s in maps))
        object.__setattr__(self, "vec", bool(self.vec))

    @property
    def name(self) -> str:
        """Canonical text form, parseable by :func:`parse_placement`."""
        for key, (maps, vec) in PRESETS.items():
            if maps == self.maps and vec == self.vec:
                return key
        parts = list(self.maps) + (["vec"] if self.vec else [])
        return "+".join(parts)


def parse_placement(text: str | Placement) -> Placement:
    """``"res3-4"``, ``"vec"``, ``"none"`` or ``"+"``-joined stages/presets (``"res2+res4+vec"``, ``"res3-4+vec"``)."""
    if isinstance(text, Placement):
        return text
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"placement must be a non-empty string, got {text!r}")
    key = text.strip().lower()
    if key in PRESETS:
        maps, vec = PRESETS[key]
        return Placement(maps, vec)
    maps: list[str] = []
    vec = False
    for part in (p.strip() for p in key.split("+") if p.strip()):
        if part in PRESETS:  # presets combine too: "res3-4+vec"
            maps += PRESETS[part][0]
            vec = vec or PRESETS[part][1]
        else:
            maps.append(part)
    try:
        return Placement(tuple(maps), vec)
    except ValueError as e:
        raise ValueError(f"placement {text!r}: {e}; presets are {sorted(PRESETS)}") from None
