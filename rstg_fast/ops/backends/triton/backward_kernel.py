"""Backward kernels of the ``triton`` backend of ``message_attention``.

Notation of docs/design.md §7: ``a = exp(s - lse)``, ``dp = dO . m`` per head,
``ds = a (dp - Delta)`` with ``Delta = rowsum(dO * O)``, ``dz = a dO [z > 0]``,
``dh = (W2^T dz) [S_j + R_i > 0]``. Everything per edge is recomputed from node rows;
nothing of size ``E x D`` is stored.

``_backward_kernel``: one program per (work item, block of ``BG`` graphs). The item's row
is the node the program *owns*: the destination (``dR``, ``dQ``) in the destination-major
pass, the source (``dS``, ``dK``) in the source-major pass over the transposed CSR
(``TRANSPOSED``). Gradients of the owned node are reduced over the item's edges in
registers; gradients of the other end of each edge are either atomically added
(``SCATTER``, the fast path: one pass) or left to the other pass (the deterministic path:
two passes, no atomics between programs).

``_weight_grad_kernel``: ``dW2 = sum_e dz_e h_e^T`` and ``db2 = sum_e dz_e``. Each program
owns ``BD`` rows of ``dW2`` (all of ``Hd``) and a fixed, strided share of the tiles, and
writes its partial sum; the partials are reduced by one ``sum`` afterwards: no atomics, no
hot spot, deterministic.
"""

from __future__ import annotations

import triton
import triton.language as tl

from rstg_fast.ops.backends.triton import configs
from rstg_fast.ops.backends.triton.forward_kernel import NAN_MAX

# Non-finite values as in the reference (PyTorch): relu(nan) = nan (tl.maximum with NAN_MAX,
# see forward_kernel), and a ReLU passes its gradient unless its output is <= 0, so a NaN
# output passes it (torch's threshold_backward): masks are written `x <= 0` -> 0, never
# `x > 0` -> pass, which is false for NaN.


@triton.autotune(
    configs=configs.BACKWARD,
    key=["Hd", "D", "A", "HEADS", "HAS_W2", "TRANSPOSED"],
    reset_to_zero=["D_OWN_H", "D_OWN_A", "D_OTHER_H", "D_OTHER_A"],  # benchmark runs must not add up
    do_bench=configs.quick_bench,
)
@triton.jit
def _backward_kernel(
    S,  # [G, N, Hd]
    R,  # [G, N, Hd]
    Q,  # [G, N, A]
    K,  # [G, N, A]
    W2,  # [D, Hd]
    B2,  # [D]
    IDX,  # [E] int64: sources by destination, or destinations by source when TRANSPOSED
    ITEMS,  # [n_items, 4] int32 (row, start, end, slot) over that CSR
    DO,  # [G, N, D] incoming gradient
    LSE,  # [G, N, HEADS] forward log-sum-exps
    O,  # [G, N, D] forward output (for Delta = rowsum(dO * O), formed here per edge row)
    D_OWN_H,  # [G, N, Hd] ACC, zeroed: dR (dS when TRANSPOSED)
    D_OWN_A,  # [G, N, A] ACC, zeroed: dQ (dK when TRANSPOSED)
    D_OTHER_H,  # [G, N, Hd] ACC, zeroed: dS when SCATTER
    D_OTHER_A,  # [G, N, A] ACC, zeroed: dK when SCATTER
    G,
    N,
    Hd,
    D,
    A,
    SCALE,  # [1] ACC score scale: a tensor, see launch_forward.scale_tensor
    HEADS: tl.constexpr,
    HAS_W2: tl.constexpr,
    TRANSPOSED: tl.constexpr,
    SCATTER: tl.constexpr,
    BH: tl.constexpr,  # power of two >= Hd (>= 16)
    BA: tl.constexpr,  # power of two >= A // HEADS
    ACC: tl.constexpr,
    DOT: tl.constexpr,  # tl.dot operand dtype: the input dtype (float32 for bfloat16 in the interpreter)
    INPUT_PRECISION: tl.constexpr,
    BG: tl.constexpr,
    BE: tl.constexpr,
    BD: tl.constexpr,
):
    scale = tl.load(SCALE)  # in ACC: float64 exact for float64 inputs
    # Register budget: the full-width tiles are (M, Hd) (h and dh) and (BD, Hd) (W2 rows);
    # queries and keys are handled one head at a time, and the owned dQ/dK rows are added
    # to memory per edge block (this program alone writes them, so the order is fixed).
    M: tl.constexpr = BG * BE
    item = tl.program_id(0)
    own = tl.load(ITEMS + item * 4).to(tl.int64)
    start = tl.load(ITEMS + item * 4 + 1)
    end = tl.load(ITEMS + item * 4 + 2)
    slot = tl.load(ITEMS + item * 4 + 3)
    Dh = D // HEADS
    Ah = A // HEADS

    g = (tl.program_id(1) * BG + tl.arange(0, BG)).to(tl.int64)  # [BG]
    g_ok = g < G
    r = tl.arange(0, M)
    g_r = (tl.program_id(1) * BG + r // BE).to(tl.int64)  # [M]
    g_r_ok = g_r < G
    e_r = r % BE
    hk = tl.arange(0, BH)  # [BH]
    hk_ok = hk < Hd
    ak = tl.arange(0, BA)  # [BA] attention column within a head
    ak_ok = ak < Ah

    d_own_h = tl.zeros([BG, BH], ACC)
    for e0 in range(start, end, BE):
        e = e0 + e_r
        ok = (e < end) & g_r_ok  # [M]
        other = tl.load(IDX + e, mask=ok, other=0)  # [M]
        if TRANSPOSED:
            src = g_r * N + own
            dst = g_r * N + other
        else:
            src = g_r * N + other
            dst = g_r * N + own
        okh = ok[:, None] & hk_ok[None, :]
        oka = ok[:, None] & ak_ok[None, :]
        hs = tl.load(S + src[:, None] * Hd + hk[None, :], mask=okh, other=0.0)
        hr = tl.load(R + dst[:, None] * Hd + hk[None, :], mask=okh, other=0.0)
        if HAS_W2:
            hd = tl.maximum(hs.to(ACC) + hr.to(ACC), 0.0, propagate_nan=NAN_MAX).to(DOT)  # [M, BH] tl.dot operand
        else:
            h = tl.maximum(hs.to(ACC) + hr.to(ACC), 0.0, propagate_nan=NAN_MAX)  # [M, BH] = the message (D = Hd)
            do_full = tl.load(DO + dst[:, None] * D + hk[None, :], mask=okh, other=0.0).to(ACC)  # [M, BH]
            do_o = do_full * tl.load(O + dst[:, None] * D + hk[None, :], mask=okh, other=0.0).to(ACC)
        dh = tl.zeros([M, BH], ACC)
        for c in tl.static_range(HEADS):
            q = tl.load(Q + dst[:, None] * A + c * Ah + ak[None, :], mask=oka, other=0.0).to(ACC)  # [M, BA]
            k = tl.load(K + src[:, None] * A + c * Ah + ak[None, :], mask=oka, other=0.0).to(ACC)  # [M, BA]
            s = tl.sum(q * k, axis=1) * scale  # [M]
            lse = tl.load(LSE + dst * HEADS + c, mask=ok, other=0.0)
            a = tl.where(ok, tl.exp(s - lse), 0.0)  # [M] attention weight
            if HAS_W2:
                dp = tl.zeros([M], ACC)
                delta = tl.zeros([M], ACC)  # rowsum(dO * O) over this head, from the tiles loaded anyway
                for d0 in range(0, Dh, BD):
                    d_in = d0 + tl.arange(0, BD)
                    d_ok = d_in < Dh
                    cols = c * Dh + d_in  # [BD]
                    w = tl.load(W2 + cols[:, None] * Hd + hk[None, :], mask=d_ok[:, None] & hk_ok[None, :], other=0.0)
                    bias = tl.load(B2 + cols, mask=d_ok, other=0.0).to(ACC)
                    z = tl.dot(hd, tl.trans(w.to(DOT)), input_precision=INPUT_PRECISION) + bias[None, :]  # [M, BD]
                    do = tl.load(DO + dst[:, None] * D + cols[None, :], mask=ok[:, None] & d_ok[None, :], other=0.0)
                    do = do.to(ACC)
                    # Columns past Dh have W2 = 0, so z = 0 * inf = NaN there when h is infinite:
                    # never live (the reference has no such column).
                    live = ((z > 0.0) | (z != z)) & d_ok[None, :]  # relu passes: z > 0 or NaN
                    dp += tl.sum(tl.where(live, do * z, 0.0), axis=1)
                    o = tl.load(O + dst[:, None] * D + cols[None, :], mask=ok[:, None] & d_ok[None, :], other=0.0)
                    delta += tl.sum(do * o.to(ACC), axis=1)
                    dz = tl.where(live, a[:, None] * do, 0.0)  # [M, BD]
                    dh = tl.dot(dz.to(DOT), w.to(DOT), acc=dh, input_precision=INPUT_PRECISION)  # [M, BH]
            else:
                in_cols = (hk // Dh == c) & hk_ok  # [BH] this head's message columns (D = Hd)
                dp = tl.sum(tl.where(in_cols[None, :], do_full * h, 0.0), axis=1)
                delta = tl.sum(tl.where(in_cols[None, :], do_o, 0.0), axis=1)
                dh += tl.where(in_cols[None, :], a[:, None] * do_full, 0.0)
            # 0 on masked rows: their z (b2 + 0 @ W2) may be inf or NaN, and a = 0 times it is NaN.
            ds = tl.where(ok, a * (dp - delta) * scale, 0.0)  # [M] d(score) times the score scale
            if TRANSPOSED:
                d_a_own = ds[:, None] * q  # dK of the owned source
                d_a_other = ds[:, None] * k
            else:
                d_a_own = ds[:, None] * k  # dQ of the owned destination
                d_a_other = ds[:, None] * q
            own_a = D_OWN_A + (g[:, None] * N + own) * A + c * Ah + ak[None, :]
            tl.atomic_add(
                own_a,
                tl.sum(tl.reshape(d_a_own, (BG, BE, BA)), axis=1),
                mask=g_ok[:, None] & ak_ok[None, :],
                sem="relaxed",
            )
            if SCATTER:
                oth = g_r * N + other
                tl.atomic_add(D_OTHER_A + oth[:, None] * A + c * Ah + ak[None, :], d_a_other, mask=oka, sem="relaxed")
        if HAS_W2:
            dh = tl.where(hd <= 0.0, 0.0, dh)  # through the first ReLU: d(S_j + R_i)
        else:
            dh = tl.where(h <= 0.0, 0.0, dh)
        d_own_h += tl.sum(tl.reshape(dh, (BG, BE, BH)), axis=1)
        if SCATTER:
            tl.atomic_add(D_OTHER_H + (g_r * N + other)[:, None] * Hd + hk[None, :], dh, mask=okh, sem="relaxed")

    own_h = D_OWN_H + (g[:, None] * N + own) * Hd + hk[None, :]
    mask_h = g_ok[:, None] & hk_ok[None, :]
    if slot < 0:  # the whole row: this program alone owns it
        tl.store(own_h, d_own_h, mask=mask_h)
    else:  # one chunk of a split row
        tl.atomic_add(own_h, d_own_h, mask=mask_h, sem="relaxed")


@triton.autotune(configs=configs.WEIGHT_GRAD, key=["Hd", "D", "A", "HEADS"], do_bench=configs.quick_bench)
@triton.jit
def _weight_grad_kernel(
    S,  # [G, N, Hd]
    R,  # [G, N, Hd]
    Q,  # [G, N, A]
    K,  # [G, N, A]
    W2,  # [D, Hd]
    B2,  # [D]
    IDX,  # [E] int64 sources by destination
    ITEMS,  # [n_items, 4] int32 (row, start, end, slot)
    DO,  # [G, N, D]
    LSE,  # [G, N, HEADS]
    DW2P,  # [SPLITS, D, Hd] ACC partial dW2 of each split
    DB2P,  # [SPLITS, D] ACC partial db2
    G,
    N,
    Hd,
    D,
    A,
    n_items,
    SCALE,  # [1] ACC score scale: a tensor, see launch_forward.scale_tensor
    SPLITS: tl.constexpr,  # programs along the edges per block of dW2 rows
    HEADS: tl.constexpr,
    BH: tl.constexpr,
    BA: tl.constexpr,  # power of two >= A // HEADS
    ACC: tl.constexpr,
    DOT: tl.constexpr,  # tl.dot operand dtype: the input dtype (float32 for bfloat16 in the interpreter)
    INPUT_PRECISION: tl.constexpr,
    BG: tl.constexpr,
    BE: tl.constexpr,
    BD: tl.constexpr,
):
    scale = tl.load(SCALE)  # in ACC: float64 exact for float64 inputs
    M: tl.constexpr = BG * BE
    Dh = D // HEADS
    Ah = A // HEADS
    n_db = tl.cdiv(Dh, BD)
    head = tl.program_id(0) // n_db
    d_in = (tl.program_id(0) % n_db) * BD + tl.arange(0, BD)
    d_ok = d_in < Dh
    cols = head * Dh + d_in  # [BD] rows of dW2 owned here
    split = tl.program_id(1)
    hk = tl.arange(0, BH)
    hk_ok = hk < Hd
    ak = head * Ah + tl.arange(0, BA)
    ak_ok = tl.arange(0, BA) < Ah
    w = tl.load(W2 + cols[:, None] * Hd + hk[None, :], mask=d_ok[:, None] & hk_ok[None, :], other=0.0)  # [BD, BH]
    bias = tl.load(B2 + cols, mask=d_ok, other=0.0).to(ACC)
    r = tl.arange(0, M)
    e_r = r % BE

    d_w2 = tl.zeros([BD, BH], ACC)
    d_b2 = tl.zeros([BD], ACC)
    n_gb = tl.cdiv(G, BG)
    for t in range(split, n_items * n_gb, SPLITS):  # a fixed share of the tiles: deterministic
        item = t // n_gb
        dst_node = tl.load(ITEMS + item * 4).to(tl.int64)
        start = tl.load(ITEMS + item * 4 + 1)
        end = tl.load(ITEMS + item * 4 + 2)
        g_r = ((t % n_gb) * BG + r // BE).to(tl.int64)  # [M]
        g_r_ok = g_r < G
        for e0 in range(start, end, BE):
            e = e0 + e_r
            ok = (e < end) & g_r_ok
            src = g_r * N + tl.load(IDX + e, mask=ok, other=0)
            dst = g_r * N + dst_node
            okh = ok[:, None] & hk_ok[None, :]
            hs = tl.load(S + src[:, None] * Hd + hk[None, :], mask=okh, other=0.0)
            hr = tl.load(R + dst[:, None] * Hd + hk[None, :], mask=okh, other=0.0)
            hd = tl.maximum(hs.to(ACC) + hr.to(ACC), 0.0, propagate_nan=NAN_MAX).to(DOT)  # [M, BH]
            oka = ok[:, None] & ak_ok[None, :]
            q = tl.load(Q + dst[:, None] * A + ak[None, :], mask=oka, other=0.0).to(ACC)
            k = tl.load(K + src[:, None] * A + ak[None, :], mask=oka, other=0.0).to(ACC)
            s = tl.sum(q * k, axis=1) * scale
            lse = tl.load(LSE + dst * HEADS + head, mask=ok, other=0.0)
            a = tl.where(ok, tl.exp(s - lse), 0.0)  # [M]
            z = tl.dot(hd, tl.trans(w.to(DOT)), input_precision=INPUT_PRECISION) + bias[None, :]  # [M, BD]
            do = tl.load(DO + dst[:, None] * D + cols[None, :], mask=ok[:, None] & d_ok[None, :], other=0.0)
            dz = tl.where(z <= 0.0, 0.0, a[:, None] * do.to(ACC))  # [M, BD]; masked rows: a = do = 0
            d_b2 += tl.sum(dz, axis=0)
            d_w2 = tl.dot(tl.trans(dz.to(DOT)), hd, acc=d_w2, input_precision=INPUT_PRECISION)

    tl.store(DW2P + (split * D + cols[:, None]) * Hd + hk[None, :], d_w2, mask=d_ok[:, None] & hk_ok[None, :])
    tl.store(DB2P + split * D + cols, d_b2, mask=d_ok)
