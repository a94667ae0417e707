"""2-frame motion backbone + motion warm-up, then SyncMNIST (scratch)."""

import argparse
import json
import time
import types

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rstg_fast.data.mnist import digit_pool
from rstg_fast.data.shards import to_tensor
from rstg_fast.data.syncmnist import CANVAS, DIGIT, MAX_STEP, NUM_CLASSES, generate, paste_digits, resize_frames
from rstg_fast.modules import RSTG
from rstg_fast.modules.norm import GlobalBatchNorm

p = argparse.ArgumentParser()
p.add_argument("--channels", type=int, default=32)
p.add_argument("--node-dim", type=int, default=64)
p.add_argument("--iterations", type=int, default=2)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--bs", type=int, default=16)
p.add_argument("--minutes", type=float, default=15)
p.add_argument("--pretrain", type=int, default=600)
p.add_argument("--pdigits", type=int, default=2)
p.add_argument("--arch", default="quick")
p.add_argument("--log", type=int, default=250)
p.add_argument("--inbn", type=int, default=1)
p.add_argument("--freeze", action="store_true")
p.add_argument("--save", default="")
a = p.parse_args()
torch.set_num_threads(1)
torch.manual_seed(0)


def gn(c):
    return nn.GroupNorm(min(8, c), c)


class Backbone(nn.Module):
    """(B,1,T,64,64) -> (B,C,T,h,w); input per frame: [frame, frame - previous frame]."""

    def __init__(s, c):
        super().__init__()
        h = c // 2
        if a.arch == "quick":
            s.layers = nn.Sequential(
                nn.Conv2d(2, h, 4, 2, 1, bias=False),
                gn(h),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(h, c, 3, 1, 1, bias=False),
                gn(c),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(c, c, 3, bias=False),
                gn(c),
                nn.ReLU(),
            )
        else:  # fine: 16x16
            s.layers = nn.Sequential(
                nn.Conv2d(2, h, 4, 2, 1, bias=False),
                gn(h),
                nn.ReLU(),
                nn.Conv2d(h, c, 3, 1, 1, bias=False),
                gn(c),
                nn.ReLU(),
                nn.AvgPool2d(2),
                nn.Conv2d(c, c, 3, 1, 1, bias=False),
                gn(c),
                nn.ReLU(),
            )

    def forward(s, x):  # x (B,1,T,H,W) in [0,1]
        d = torch.cat([torch.zeros_like(x[:, :, :1]), x[:, :, 1:] - x[:, :, :-1]], 2)
        x = torch.cat([x, d], 1)
        b, c, t, h, w = x.shape
        y = s.layers(x.transpose(1, 2).reshape(b * t, c, h, w))
        return y.reshape(b, t, *y.shape[1:]).transpose(1, 2)


pool = digit_pool("train")


def motion_batch(n, k, rng):
    """n two-frame clips with k digits of distinct classes, each with its own step."""
    cls = np.argsort(rng.random((n, 10)), 1)[:, :k]
    idx = np.array([[rng.choice(pool.by_class[c]) for c in row] for row in cls])
    top = CANVAS - DIGIT
    p0 = rng.integers(0, top + 1, (n, k, 2))
    p1 = np.clip(p0 + rng.integers(-MAX_STEP, MAX_STEP, (n, k, 2)), 0, top)
    canvas = np.zeros((n, 2, CANVAS, CANVAS), np.uint8)
    for j in range(k):
        for t, pos in ((0, p0), (1, p1)):
            paste_digits(
                canvas, (np.arange(n)[:, None, None], np.full((n, 1, 1), t)), pos[:, j], pool.images[idx[:, j]]
            )
    return resize_frames(canvas), cls, (p1 - p0) / MAX_STEP


net_bb = Backbone(a.channels)
if a.pretrain:
    head = nn.Linear(a.channels, 30)
    chead = nn.Linear(a.channels, 10)
    opt = torch.optim.AdamW(
        list(net_bb.parameters()) + list(head.parameters()) + list(chead.parameters()), 3e-3, weight_decay=1e-4
    )
    rng = np.random.default_rng(1)
    t0 = time.time()
    acc = err = 0
    for step in range(a.pretrain):
        k = 1
        fr, cls, d = motion_batch(64, k, rng)
        x = torch.from_numpy(fr).float().div(255)[:, None]  # (64,1,2,64,64)
        fm = net_bb(x)[:, :, 1]
        out = head(fm.mean((2, 3))).view(-1, 10, 3)
        out = torch.cat([chead(fm.amax((2, 3)))[..., None], out[..., 1:]], -1)
        pres = torch.zeros(64, 10)
        pres[np.arange(64)[:, None], cls] = 1
        tgt = torch.zeros(64, 10, 2)
        tgt[np.arange(64)[:, None], cls] = torch.from_numpy(d).float()
        loss = (
            F.cross_entropy(out[..., 0], torch.from_numpy(cls[:, 0]))
            + 5 * ((out[..., 1:] - tgt) ** 2 * pres[..., None]).sum() / pres.sum()
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        acc += (out[..., 0].argmax(1).numpy() == cls[:, 0]).mean()
        err += (((out[..., 1:] - tgt) ** 2 * pres[..., None]).sum() / pres.sum() / 2).sqrt().item() * MAX_STEP
        if (step + 1) % 100 == 0:
            print(
                json.dumps(
                    dict(
                        pre=step + 1,
                        t=round(time.time() - t0),
                        presence_exact=round(acc / 100, 3),
                        step_rmse=round(err / 100, 2),
                    )
                ),
                flush=True,
            )
            acc = err = 0


class Net(nn.Module):
    def __init__(s):
        super().__init__()
        s.backbone = net_bb
        s.rstg = RSTG(
            a.channels,
            node_dim=a.node_dim,
            message_dim=a.node_dim,
            iterations=a.iterations,
            input_norm="batch" if a.inbn else "none",
        )
        s.head = nn.Sequential(GlobalBatchNorm(a.node_dim), nn.Linear(a.node_dim, NUM_CLASSES))

    def forward(s, x):
        return s.head(s.rstg(s.backbone(x)))


net = Net()
if a.freeze:
    for q in net.backbone.parameters():
        q.requires_grad_(False)
    net.backbone.eval()
opt = torch.optim.AdamW([q for q in net.parameters() if q.requires_grad], lr=a.lr, weight_decay=1e-4)
pairs = np.array(sorted([[i, j] for i in range(10) for j in range(i)], key=lambda q: q[0] * (q[0] - 1) // 2 + q[1]))


def stats(pred, b):
    hi, lo = pairs[np.minimum(pred, 44)].T
    named = (pred < 45) & (b.digits == hi[:, None]).any(1) & (b.digits == lo[:, None]).any(1)
    right = pred == b.labels
    return np.array([right.sum(), named.sum(), (right & named).sum(), len(pred)])


t0 = time.time()
step = 0
win = np.zeros(4)
ls = 0
while time.time() - t0 < a.minutes * 60:
    b = generate(a.bs, 3, "train", 0, stream=step + 1000)
    x, y = to_tensor(b.videos), torch.from_numpy(b.labels)
    for g in opt.param_groups:
        g["lr"] = a.lr * min(1, (step + 1) / 200)
    lo = net(x)
    loss = F.cross_entropy(lo, y)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
    opt.step()
    win += stats(lo.argmax(1).numpy(), b)
    ls += loss.item()
    step += 1
    if step % a.log == 0:
        r, n, rn, c = win
        print(
            json.dumps(
                dict(
                    step=step,
                    t=round(time.time() - t0),
                    loss=round(ls / a.log, 3),
                    acc=round(r / c, 3),
                    named=round(n / c, 3),
                    pair=round(rn / max(n, 1), 3),
                )
            ),
            flush=True,
        )
        win[:] = 0
        ls = 0
test = generate(512, 3, "test", 0, stream=0)
net.eval()
res = np.zeros(4)
with torch.no_grad():
    for s in range(0, 512, 128):
        res += stats(
            net(to_tensor(test.videos[s : s + 128])).argmax(1).numpy(),
            types.SimpleNamespace(digits=test.digits[s : s + 128], labels=test.labels[s : s + 128]),
        )
r, n, rn, c = res
print("TEST", json.dumps(dict(step=step, acc=r / c, named=n / c, pair=rn / max(n, 1))), flush=True)
if a.save:
    torch.save(net.state_dict(), a.save)
