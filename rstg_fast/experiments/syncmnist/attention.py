"""Which nodes each node attends to, in a trained SyncMNIST model (the docs' attention picture).

Usage::

    rstg-fast syncmnist-attention --checkpoint runs/quick/checkpoint.pt \
        --out docs/img/syncmnist_attention.png

A forward pre-hook captures the node features entering the space stage at every iteration;
the attention logits ``s_ij = scale * <W_q v_i, W_k v_j>`` on the graph's edges and the
``lse`` that the fused op returns (``return_lse=True``) give ``a_ij = exp(s_ij - lse_i)``.
The figure shows one test video's frames and, per iteration, the ``N x N`` matrix of
attention weights (destination rows, source columns) averaged over the frames, with the
node grid (3x3, 2x2, 1x1) marked. Needs matplotlib.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from rstg_fast._errors import UsageError
from rstg_fast.data.shards import to_tensor
from rstg_fast.data.syncmnist import NO_SYNC, generate, label_pair
from rstg_fast.experiments.syncmnist.train import load_trained
from rstg_fast.ops import message_attention


def attention_weights(
    stage: torch.nn.Module, v: torch.Tensor, indptr: torch.Tensor, indices: torch.Tensor
) -> torch.Tensor:
    """``(G, N, N)`` attention ``a[g, i, j]`` (heads averaged) of one space stage on ``v (G, N, D)``.

    ``lse`` comes from the fused op; ``s_ij`` from the stage's query and key layers.
    """
    D, M = stage.node_dim, stage.message_dim
    W1 = stage.send[0].weight
    S = F.linear(v, W1[:, :D])
    R = F.linear(v, W1[:, D : 2 * D], stage.send[0].bias)
    if stage.pos is not None:
        P = stage.pos_dim
        S = S + F.linear(stage.pos, W1[:, 2 * D : 2 * D + P])
        R = R + F.linear(stage.pos, W1[:, 2 * D + P :])
    Q, K = stage.query(v), stage.key(v)
    W2, b2 = (stage.send[2].weight, stage.send[2].bias) if stage.send_layers == 2 else (None, None)
    _, lse = message_attention(
        S, R, Q, K, W2, b2, indptr, indices, heads=stage.heads, scale=stage.scale, return_lse=True
    )  # lse (G, N, heads)
    G, N, _ = v.shape
    h = stage.heads
    dst = torch.repeat_interleave(torch.arange(N), indptr[1:] - indptr[:-1])
    q = Q.view(G, N, h, M // h)[:, dst]  # (G, E, h, d)
    k = K.view(G, N, h, M // h)[:, indices]
    s = stage.scale * (q * k).sum(-1)  # (G, E, h)
    a = torch.exp(s - lse[:, dst]).mean(-1)  # (G, E)
    out = torch.zeros(G, N, N, dtype=a.dtype)
    out[:, dst, indices] = a
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a checkpoint.pt of rstg-fast syncmnist")
    p.add_argument("--out", required=True, help="PNG path")
    p.add_argument("--video", type=int, default=0, help="index among synced test videos")


def check_args(args: argparse.Namespace) -> None:
    import os

    if not os.path.isfile(args.checkpoint):
        raise ValueError(f"--checkpoint {args.checkpoint}: no such file")
    if args.video < 0:
        raise ValueError(f"--video must be >= 0, got {args.video}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ValueError("the attention picture needs matplotlib: pip install matplotlib") from None


def run(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model, cfg = load_trained(args.checkpoint)
    batch = generate(64, cfg.digits, "test", cfg.seed + 1, source=cfg.source)
    synced = np.flatnonzero(batch.labels != NO_SYNC)
    if args.video >= len(synced):
        raise UsageError(f"--video must be < {len(synced)} (the synced videos among 64 test videos), got {args.video}")
    idx = synced[args.video]
    captured: list[torch.Tensor] = []
    space = model.rstg.space
    hook = space.register_forward_pre_hook(lambda mod, inputs: captured.append(inputs[0].detach()))
    with torch.no_grad():
        pred = int(model(to_tensor(batch.videos[idx : idx + 1])).argmax(1))
        hook.remove()
        graph = model.rstg._graph(torch.zeros(1, 1, 1, 6, 6))
        mats = [attention_weights(space, v, graph.indptr, graph.indices).mean(0).numpy() for v in captured]

    truth = label_pair(int(batch.labels[idx]))
    guess = label_pair(pred)
    n = len(mats)
    fig = plt.figure(figsize=(10, 1.6 + 3.6))
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.2, 3.6])
    for t, ax in enumerate(top.subplots(1, 10)):
        ax.imshow(batch.videos[idx, t], cmap="gray", vmin=0, vmax=255)
        ax.set_axis_off()
        ax.set_title(f"t={t}", fontsize=7)
    sizes = [sh * sw for sh, sw in model.rstg.scales]
    cuts = np.cumsum(sizes)[:-1] - 0.5
    axes = np.atleast_1d(bottom.subplots(1, max(n, 1)))
    for k, (ax, m) in enumerate(zip(axes, mats, strict=True)):
        im = ax.imshow(m, cmap="viridis", vmin=0, vmax=max(float(m.max()), 1e-6))
        for c in cuts:
            ax.axhline(c, color="w", lw=0.6)
            ax.axvline(c, color="w", lw=0.6)
        ax.set_title(f"space stage, iteration {k + 1}: a[i, j]", fontsize=8)
        ax.set_xlabel("source node j", fontsize=7)
        ax.set_ylabel("destination node i", fontsize=7)
        ax.tick_params(labelsize=6)
        bottom.colorbar(im, ax=ax, fraction=0.046)
    bottom.suptitle(
        f"digits {batch.digits[idx].tolist()}, synced pair {truth}, predicted {guess} "
        f"(nodes 0-8: 3x3, 9-12: 2x2, 13: 1x1; mean over frames)",
        fontsize=9,
    )
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")
    return 0
