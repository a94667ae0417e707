"""Exploration harness for SyncMNIST recipes (scratch, not the product)."""

import argparse
import json
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rstg_fast.data.shards import to_tensor
from rstg_fast.data.syncmnist import NUM_CLASSES, generate
from rstg_fast.experiments.syncmnist_model import ConvBackbone, GlobalBatchNorm
from rstg_fast.experiments.syncmnist_pretrain import pretrain_backbone
from rstg_fast.modules import RSTG

p = argparse.ArgumentParser()
p.add_argument("--backbone", default="quick")
p.add_argument("--moments", action="store_true")
p.add_argument("--channels", type=int, default=32)
p.add_argument("--node-dim", type=int, default=64)
p.add_argument("--message-dim", type=int, default=64)
p.add_argument("--send-layers", type=int, default=2)
p.add_argument("--iterations", type=int, default=2)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--tdiff", action="store_true")
p.add_argument("--bs", type=int, default=16)
p.add_argument("--minutes", type=float, default=15)
p.add_argument("--pretrain", type=int, default=300)
p.add_argument("--init", default="paper")
p.add_argument("--inbn", type=int, default=1)
p.add_argument("--norm", default="layer")
p.add_argument("--schedule", default="all_time_stages")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--log", type=int, default=250)
a = p.parse_args()
torch.set_num_threads(1)
torch.manual_seed(a.seed)


def gn(c):
    return nn.GroupNorm(min(8, c), c)


class Fine(nn.Module):
    """64 -> 16x16 map, no max-pool."""

    def __init__(s, c):
        super().__init__()
        h = c // 2
        s.layers = nn.Sequential(
            nn.Conv2d(1, h, 4, 2, 1, bias=False),
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

    def forward(s, x):
        b, c, t, h, w = x.shape
        y = s.layers(x.transpose(1, 2).reshape(b * t, c, h, w))
        return y.reshape(b, t, *y.shape[1:]).transpose(1, 2)


class Pool(nn.Module):  # stride-1 first conv, maxpools -> 14x14? authors-like small
    def __init__(s, c):
        super().__init__()
        h = c // 2
        s.layers = nn.Sequential(
            nn.Conv2d(1, h, 3, 1, 1, bias=False),
            gn(h),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(h, c, 3, 1, 1, bias=False),
            gn(c),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c, c, 3, 1, 1, bias=False),
            gn(c),
            nn.ReLU(),
        )

    def forward(s, x):
        b, c, t, h, w = x.shape
        y = s.layers(x.transpose(1, 2).reshape(b * t, c, h, w))
        return y.reshape(b, t, *y.shape[1:]).transpose(1, 2)


BACK = {"quick": ConvBackbone, "fine": Fine, "pool": Pool}


class Net(nn.Module):
    def __init__(s):
        super().__init__()
        s.backbone = BACK[a.backbone](a.channels)
        cin = a.channels * (3 if a.moments else 1) * (2 if a.tdiff else 1)
        s.rstg = RSTG(
            cin,
            node_dim=a.node_dim,
            message_dim=a.message_dim,
            iterations=a.iterations,
            send_layers=a.send_layers,
            norm=a.norm,
            schedule=a.schedule,
        )
        s.inbn = GlobalBatchNorm(a.node_dim) if a.inbn else None
        if s.inbn is not None:
            emb = s.rstg.embed

            def embed(x, g):
                v = emb(x, g)
                return s.inbn(v.reshape(-1, v.shape[-1])).view(v.shape)

            s.rstg.embed = embed
        s.head = nn.Sequential(GlobalBatchNorm(a.node_dim), nn.Linear(a.node_dim, NUM_CLASSES))

    def forward(s, x):
        f = s.backbone(x)
        if a.moments:
            H, W = f.shape[-2:]
            ys = torch.linspace(-1, 1, H).view(H, 1).expand(H, W)
            xs = torch.linspace(-1, 1, W).view(1, W).expand(H, W)
            f = torch.cat([f, f * ys, f * xs], 1)
        if a.tdiff:
            d = torch.cat([torch.zeros_like(f[:, :, :1]), f[:, :, 1:] - f[:, :, :-1]], 2)
            f = torch.cat([f, d], 1)
        return s.head(s.rstg(f))


def paper_init(m):
    for mod in m.modules():
        if isinstance(mod, nn.Linear):
            nn.init.xavier_uniform_(mod.weight)
            nn.init.zeros_(mod.bias)
        if hasattr(mod, "weight_ih") and hasattr(mod, "cell_type"):
            g = 4 if mod.cell_type == "lstm" else 3
            for w in (mod.weight_ih, mod.weight_hh):
                for blk in w.data.chunk(g, 0):
                    nn.init.xavier_uniform_(blk)
            nn.init.zeros_(mod.bias_ih)
            nn.init.zeros_(mod.bias_hh)


net = Net()
if a.init == "paper":
    paper_init(net.rstg)
if a.pretrain:
    t = time.time()
    acc = pretrain_backbone(
        net.backbone, a.channels, dict(pretrain_steps=a.pretrain, seed=a.seed, source=None), torch.device("cpu")
    )
    print(f"pretrain {acc[-1] if acc else 0:.3f} in {time.time() - t:.0f}s", flush=True)
opt = torch.optim.AdamW(net.parameters(), lr=a.lr, weight_decay=1e-4)
pairs = np.array([[i, j] for i in range(10) for j in range(i)])  # class c -> (hi, lo)
order = np.argsort([i * (i - 1) // 2 + j for i, j in pairs])
pairs = pairs[order]
test = generate(512, 3, "test", 0, stream=0)


def stats(pred, b):
    named = np.zeros(len(pred), bool)
    ok = pred < 45
    hi, lo = pairs[np.minimum(pred, 44)].T
    named = ok & (b.digits == hi[:, None]).any(1) & (b.digits == lo[:, None]).any(1)
    right = pred == b.labels
    return right.sum(), named.sum(), (right & named).sum(), len(pred)


t0 = time.time()
step = 0
win = np.zeros(4)
lsum = 0
while time.time() - t0 < a.minutes * 60:
    b = generate(a.bs, 3, "train", a.seed, stream=step + 1000)
    x, y = to_tensor(b.videos), torch.from_numpy(b.labels)
    for g in opt.param_groups:
        g["lr"] = a.lr * min(1, (step + 1) / 200)
    logits = net(x)
    loss = F.cross_entropy(logits, y)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
    opt.step()
    win += stats(logits.argmax(1).numpy(), b)
    lsum += loss.item()
    step += 1
    if step % a.log == 0:
        r, n, rn, c = win
        print(
            json.dumps(
                dict(
                    step=step,
                    t=round(time.time() - t0),
                    loss=round(lsum / a.log, 3),
                    acc=round(r / c, 3),
                    named=round(n / c, 3),
                    pair=round(rn / max(n, 1), 3),
                )
            ),
            flush=True,
        )
        win[:] = 0
        lsum = 0
net.eval()
res = np.zeros(4)
with torch.no_grad():
    for s in range(0, 512, 128):
        import types

        bb = types.SimpleNamespace(digits=test.digits[s : s + 128], labels=test.labels[s : s + 128])
        res += stats(net(to_tensor(test.videos[s : s + 128])).argmax(1).numpy(), bb)
r, n, rn, c = res
print("TEST", json.dumps(dict(step=step, acc=r / c, named=n / c, pair=rn / max(n, 1))), flush=True)
