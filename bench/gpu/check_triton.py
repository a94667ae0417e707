"""Check and time the ``triton`` backend of ``message_attention``: one script for a GPU session.

    python bench/gpu/check_triton.py --compile-only [--dtypes ...]  # no GPU: ptxas registers/spills
    python bench/gpu/check_triton.py [--shapes paper,dense] [--dtypes bfloat16] [--json OUT.json]

On a GPU it (1) gates each case: triton's output and gradients against the float64
reference (max error relative to the largest value, must stay under the dtype's bound), and
(2) times forward and forward+backward of ``triton`` and ``reference`` with
``triton.testing.do_bench`` (median, 20/80 percentiles, ms) and records peak memory. A case
that fails the gate posts no timing. ``--compile-only`` compiles every autotuning config of
every kernel for sm_90 through Triton and ptxas and prints registers and spill (stack) bytes.
The full test suite is ``pytest tests/ops/test_triton_backend.py`` (GPU tests run there).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import torch

from rstg_fast._atomic import atomic_path
from rstg_fast._errors import ArgumentParser  # errors: one line, exit code 2

SHAPES = {  # docs/design.md §5: (B, T, scales, H, W, width)
    "syncmnist": (32, 10, ((3, 3), (2, 2), (1, 1)), 6, 6, 512),
    "paper": (8, 16, ((3, 3), (2, 2), (1, 1)), 14, 14, 512),
    "dense": (4, 16, ((14, 14), (7, 7), (3, 3), (1, 1)), 14, 14, 256),
    "huge": (2, 16, ((28, 28), (14, 14), (7, 7), (3, 3), (1, 1)), 28, 28, 256),
}
GATE = {torch.float64: 1e-9, torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 6e-2}  # relative max error


def compile_only(dtype: str = "bfloat16", precision: str = "ieee", widths=(256, 512), first_only: bool = False) -> int:
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from rstg_fast.ops.backends.triton import backward_kernel as bk
    from rstg_fast.ops.backends.triton import configs
    from rstg_fast.ops.backends.triton import forward_kernel as fk

    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/cuobjdump")
    short = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32", "float64": "fp64"}[dtype]
    acc = "fp64" if dtype == "float64" else "fp32"
    ptrs = {n: short for n in ["S", "R", "Q", "K", "W2", "B2", "O", "DO"]}
    ptrs.update(IDX="i64", ITEMS="i32", MERGES="i32")
    ptrs.update(
        {
            n: "fp32"
            for n in ["LSE", "OP", "LSEP", "DELTA", "D_OWN_H", "D_OWN_A", "D_OTHER_H", "D_OTHER_A", "DW2P", "DB2P"]
        }
    )
    ptrs["SCALE"] = acc  # the score scale is a (1,) tensor in the accumulation dtype
    common = dict(ACC=getattr(tl, acc.replace("fp", "float")), DOT=getattr(tl, dtype), INPUT_PRECISION=precision)
    jobs = []
    pick = (lambda cs: cs[:1]) if first_only else (lambda cs: cs)
    for Hd in widths:
        for c in pick(configs.FORWARD):
            jobs.append(("forward", Hd, fk._forward_kernel, c, dict(HEADS=1, HAS_W2=True, BA=64, **common)))
        for c in pick(configs.BACKWARD):
            for w2 in (True, False):
                extra = dict(HEADS=2, HAS_W2=w2, TRANSPOSED=False, SCATTER=True, BH=Hd, BA=64, **common)
                jobs.append((f"backward{'' if w2 else '-one-layer'}", Hd, bk._backward_kernel, c, extra))
        for c in pick(configs.WEIGHT_GRAD):
            jobs.append(
                ("weight_grad", Hd, bk._weight_grad_kernel, c, dict(SPLITS=64, HEADS=1, BH=Hd, BA=64, **common))
            )
    for name, Hd, kernel, cfg, consts in jobs:
        fn = kernel.fn
        consts = {**consts, **cfg.kwargs}
        sig = {a: "constexpr" if a in consts else ("*" + ptrs[a] if a in ptrs else "i32") for a in fn.arg_names}
        src = ASTSource(fn=fn, signature=sig, constexprs={(fn.arg_names.index(k),): v for k, v in consts.items()})
        k = triton.compile(
            src, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=cfg.num_warps, num_stages=cfg.num_stages)
        )
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(k.asm["cubin"])
            f.flush()
            usage = subprocess.run([cuobjdump, "--dump-resource-usage", f.name], capture_output=True, text=True).stdout
        regs = [w for w in usage.split() if w.startswith(("REG:", "STACK:"))]
        print(
            f"{dtype} {name:<20} Hd={Hd:<4} {cfg.kwargs} warps={cfg.num_warps} stages={cfg.num_stages}:",
            " ".join(regs),
        )
    return 0


def inputs(shape: str, dtype: torch.dtype, heads: int):
    from rstg_fast.graph import grid_graph

    B, T, scales, H, W, width = SHAPES[shape]
    g = grid_graph(scales, H, W)
    G, N = B * T, g.num_nodes
    gen = torch.Generator(device="cuda").manual_seed(0)

    def rnd(*s, scale=1.0):
        return (torch.randn(*s, device="cuda", generator=gen) * scale).to(dtype).requires_grad_(True)

    x = dict(S=rnd(G, N, width), R=rnd(G, N, width), Q=rnd(G, N, width), K=rnd(G, N, width),
             W2=rnd(width, width, scale=width**-0.5), b2=rnd(width, scale=0.1))  # fmt: skip
    return x, g.indptr.cuda(), g.indices.cuda(), heads


def gate(shape: str, dtype: torch.dtype, heads: int) -> float:
    """Max error of triton's O and gradients relative to the largest value, vs float64 reference."""
    from rstg_fast.ops import message_attention

    x, indptr, indices, heads = inputs(shape, dtype, heads)
    x64 = {k: v.detach().double().requires_grad_(True) for k, v in x.items()}
    worst = 0.0
    O64 = message_attention(**x64, indptr=indptr, indices=indices, heads=heads, backend="reference")
    O = message_attention(**x, indptr=indptr, indices=indices, heads=heads, backend="triton")
    dO = torch.randn_like(O64)
    g64 = torch.autograd.grad(O64, list(x64.values()), dO)
    g = torch.autograd.grad(O, list(x.values()), dO.to(dtype))
    for a, b in [(O, O64), *zip(g, g64, strict=True)]:
        worst = max(worst, float((a.double() - b).abs().max() / b.abs().max().clamp_min(1e-30)))
    return worst


def timing(shape: str, dtype: torch.dtype, heads: int, backend: str) -> dict:
    from triton.testing import do_bench

    from rstg_fast.ops import message_attention

    x, indptr, indices, heads = inputs(shape, dtype, heads)

    def fwd():
        return message_attention(**x, indptr=indptr, indices=indices, heads=heads, backend=backend)

    dO = torch.randn_like(fwd())

    def fwd_bwd():
        return torch.autograd.grad(fwd(), list(x.values()), dO)

    out = {}
    for mode, fn in (("forward", fwd), ("forward+backward", fwd_bwd)):
        torch.cuda.reset_peak_memory_stats()
        try:
            q = do_bench(fn, quantiles=[0.5, 0.2, 0.8], warmup=25, rep=100)
            out[mode] = dict(ms=q[0], p20=q[1], p80=q[2], peak_mib=torch.cuda.max_memory_allocated() / 2**20)
        except torch.cuda.OutOfMemoryError:
            out[mode] = dict(ms=None, note="out of memory")
            torch.cuda.empty_cache()
    return out


def main() -> int:
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--compile-only", action="store_true")
    p.add_argument("--precision", default="ieee", help="tl.dot input_precision for float32 (--compile-only)")
    p.add_argument("--widths", default="256,512", help="Hd values to compile for (--compile-only)")
    p.add_argument("--first-only", action="store_true", help="only the first config of each kernel (--compile-only)")
    p.add_argument("--shapes", default=",".join(SHAPES))
    p.add_argument("--dtypes", default="bfloat16,float16,float32")
    p.add_argument("--heads", type=int, default=1)
    p.add_argument("--json", default=os.path.join(os.environ.get("OUT", "."), "check_triton.json"))
    args = p.parse_args()
    if args.compile_only:
        widths = tuple(int(w) for w in args.widths.split(","))
        return max(compile_only(d, args.precision, widths, args.first_only) for d in args.dtypes.split(","))
    if not torch.cuda.is_available():
        print("needs a CUDA GPU (or --compile-only)")
        return 2
    rows, status = [], 0
    print(
        f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  "
        f"tf32 {torch.backends.cuda.matmul.allow_tf32}"
    )
    for shape in args.shapes.split(","):
        for dname in args.dtypes.split(","):
            dtype = getattr(torch, dname)
            err = gate(shape, dtype, args.heads)
            ok = err <= GATE[dtype]
            row = dict(shape=shape, dtype=dname, heads=args.heads, gate_error=err, gate_ok=ok)
            if ok:
                row["triton"] = timing(shape, dtype, args.heads, "triton")
                row["reference"] = timing(shape, dtype, args.heads, "reference")
            else:
                status = 1
            rows.append(row)
            t, r = row.get("triton", {}), row.get("reference", {})

            def ms(d, m):
                v = d.get(m, {}).get("ms")
                return f"{v:8.3f}" if v is not None else "     n/a"

            print(f"{shape:<10} {dname:<9} gate {err:.1e} {'ok ' if ok else 'RED'}  "
                  f"fwd triton {ms(t, 'forward')} ref {ms(r, 'forward')} ms   "
                  f"fwd+bwd triton {ms(t, 'forward+backward')} ref {ms(r, 'forward+backward')} ms",
                  flush=True)  # fmt: skip
    with atomic_path(args.json) as tmp, open(tmp, "w") as f:
        json.dump(dict(device=torch.cuda.get_device_name(), command=" ".join(sys.argv), rows=rows), f, indent=1)
    return status


if __name__ == "__main__":
    sys.exit(main())
