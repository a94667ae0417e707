"""Streaming inference: one frame at a time, the recurrent state kept between frames."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # only named in annotations; base.py imports this module
    from rstg_fast.modules.base import RSTGBase


class RSTGStream:
    """Feeds an RSTG one frame's features at a time.

    ``step(frame)`` with ``frame (B, C, H, W)`` returns exactly what ``model(x[:, :, :t])``
    returns for the frames seen so far (up to floating-point rounding): for
    ``readout="map"`` the current frame's map ``(B, C, H, W)``; for ``readout="vec"`` the
    readout over all frames so far ``(B, node_dim)`` (a running mean for
    ``time_readout="mean"``, the current frame for ``"last"``; for ``space_only`` every frame
    so far has the same final nodes, so the current frame's readout is already the answer). Each step costs one frame of
    work: the recurrent states of every time stage (and, for ``space_only``, the running sum
    of the first mean over time) are carried, nothing is recomputed. Gradients flow as in the
    model (wrap in ``torch.no_grad()`` for inference).

    >>> s = model.stream()
    >>> outs = [s.step(x[:, :, t]) for t in range(x.shape[2])]
    """

    def __init__(self, model: RSTGBase) -> None:
        self.model = model
        self.reset()

    def reset(self) -> None:
        """Forget every frame seen so far."""
        self.states = None
        self.frames = 0
        self._batch = 0  # B of the frames since reset (the carried states are per video)
        self._size: tuple[int, int] | None = None  # H x W of the frames since reset
        self._vec_sum: torch.Tensor | None = None

    def step(self, frame: torch.Tensor) -> torch.Tensor:
        """Consume one frame ``(B, C, H, W)``; return the model's output on the frames so far."""
        m = self.model
        m._check_input(frame, 4, "frame")
        if self.states is not None and frame.shape[0] != self._batch:
            raise ValueError(
                f"frame must keep the stream's batch size {self._batch} (call reset() to start another stream), "
                f"got shape {tuple(frame.shape)}"
            )
        size = (int(frame.shape[-2]), int(frame.shape[-1]))
        if self.states is not None and size != self._size:
            raise ValueError(
                f"frame must keep the stream's map size H x W = {self._size[0]} x {self._size[1]} "
                f"(call reset() to start another stream), got shape {tuple(frame.shape)}"
            )
        self._batch, self._size = frame.shape[0], size
        if self.states is not None:
            # the model may have moved since the last frame (.double(), .to(device)): the carried
            # states follow the frame, so a stream continues across such a conversion
            self.states = _states_like(self.states, frame)
            if self._vec_sum is not None:
                self._vec_sum = self._vec_sum.to(frame)
        x = frame.unsqueeze(2)  # (B, C, 1, H, W)
        graph = m._graph(x)
        v, self.states = m.propagate(m.embed(x, graph), graph, self.states)
        self.frames += 1
        if m.readout is not None:
            return m.readout(v, x, graph.paint)[:, :, 0]
        nodes = v[:, 0].sum(1)  # (B, node_dim) this frame's node sum
        if m.time_readout == "last" or m.schedule == "space_only":
            # space_only: the state is the running mean over time, so every frame so far has
            # this same final value and the readout over them is this frame's
            return nodes
        self._vec_sum = nodes if self._vec_sum is None else self._vec_sum + nodes
        return self._vec_sum / self.frames

    __call__ = step


def _states_like(states, like: torch.Tensor):
    """``states`` (nested lists/tuples of tensors, numbers and None) with every tensor in
    ``like``'s dtype and device."""
    if isinstance(states, torch.Tensor):
        return states.to(like) if states.is_floating_point() else states.to(like.device)
    if isinstance(states, (list, tuple)):
        return type(states)(_states_like(s, like) for s in states)
    return states
