"""Diagnostic: RSTG on oracle class-occupancy maps (box of each digit in its class channel)."""

import argparse
import json
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rstg_fast import pooling
from rstg_fast.data.syncmnist import NUM_CLASSES, generate
from rstg_fast.modules import RSTG
from rstg_fast.modules.norm import GlobalBatchNorm

p = argparse.ArgumentParser()
p.add_argument("--res", type=int, default=25)
p.add_argument("--moments", action="store_true")
p.add_argument("--node-dim", type=int, default=64)
p.add_argument("--iterations", type=int, default=2)
p.add_argument("--minutes", type=float, default=6)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--tdiff", action="store_true")
p.add_argument("--bs", type=int, default=16)
p.add_argument("--inbn", type=int, default=1)
p.add_argument("--send-layers", type=int, default=2)
p.add_argument("--velocity", action="store_true")
p.add_argument("--chbn", action="store_true")
p.add_argument("--nonconj", action="store_true")
p.add_argument("--heads", type=int, default=1)
p.add_argument("--norm", default="layer")
a = p.parse_args()
torch.set_num_threads(1)
torch.manual_seed(0)
A = pooling.area_matrix(100, a.res).numpy()


def oracle(b):
    n, T, k, _ = b.coords.shape
    r = np.arange(100)
    y = b.coords[..., 0]
    x = b.coords[..., 1]
    ry = ((r >= y[..., None]) & (r < y[..., None] + 28)).astype(np.float32) @ A.T  # (n,T,k,res)
    rx = ((r >= x[..., None]) & (r < x[..., None] + 28)).astype(np.float32) @ A.T
    box = ry[..., :, None] * rx[..., None, :]  # n T k res res
    out = np.zeros((n, 30 if a.velocity else 10, T, a.res, a.res), np.float32)
    vel = np.zeros(b.coords.shape, np.float32)
    vel[:, 1:] = (b.coords[:, 1:] - b.coords[:, :-1]) / 10.0
    for j in range(k):
        out[np.arange(n), b.digits[:, j]] += box[:, :, j]
        if a.velocity:
            cy = 10 if a.nonconj else 10 + b.digits[:, j]
            cx = 11 if a.nonconj else 20 + b.digits[:, j]
            out[np.arange(n), cy] += box[:, :, j] * vel[:, :, j, 0, None, None]
            out[np.arange(n), cx] += box[:, :, j] * vel[:, :, j, 1, None, None]
    return torch.from_numpy(out)


class Net(nn.Module):
    def __init__(s):
        super().__init__()
        s.rstg = RSTG(
            (30 if a.velocity else 10) * (3 if a.moments else 1) * (2 if a.tdiff else 1),
            heads=a.heads,
            norm=a.norm,
            node_dim=a.node_dim,
            message_dim=a.node_dim,
            iterations=a.iterations,
            send_layers=a.send_layers,
            input_norm="batch" if a.inbn else "none",
        )
        cin = (30 if a.velocity else 10) * (3 if a.moments else 1) * (2 if a.tdiff else 1)
        s.chbn = nn.BatchNorm3d(cin) if a.chbn else None
        s.head = nn.Sequential(GlobalBatchNorm(a.node_dim), nn.Linear(a.node_dim, NUM_CLASSES))

    def forward(s, f):
        if a.moments:
            H, W = f.shape[-2:]
            ys = torch.linspace(-1, 1, H).view(H, 1)
            xs = torch.linspace(-1, 1, W).view(1, W)
            f = torch.cat([f, f * ys, f * xs], 1)
        if a.tdiff:
            d = torch.cat([torch.zeros_like(f[:, :, :1]), f[:, :, 1:] - f[:, :, :-1]], 2)
            f = torch.cat([f, d], 1)
        if s.chbn is not None:
            f = s.chbn(f)
        return s.head(s.rstg(f))


net = Net()
opt = torch.optim.AdamW(net.parameters(), lr=a.lr, weight_decay=1e-4)
t0 = time.time()
step = 0
acc = 0
ls = 0
while time.time() - t0 < a.minutes * 60:
    b = generate(a.bs, 3, "train", 0, stream=step + 1000)
    x, y = oracle(b), torch.from_numpy(b.labels)
    for g in opt.param_groups:
        g["lr"] = a.lr * min(1, (step + 1) / 200)
    lo = net(x)
    loss = F.cross_entropy(lo, y)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
    opt.step()
    acc += (lo.argmax(1) == y).float().mean().item()
    ls += loss.item()
    step += 1
    if step % 250 == 0:
        print(
            json.dumps(dict(step=step, t=round(time.time() - t0), loss=round(ls / 250, 3), acc=round(acc / 250, 3))),
            flush=True,
        )
        acc = ls = 0
