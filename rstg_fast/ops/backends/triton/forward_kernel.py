"""Forward kernels of the ``triton`` backend of ``message_attention``.

``_forward_kernel``: one program per (work item, block of ``BG`` graphs, head x ``BD``
output columns). A work item is a destination row ``i`` and a chunk of its sources (see
``plan.py``). For each block of ``BE`` sources the program forms the ``M = BG * BE`` rows
``h = relu(S[g, j] + R[g, i])`` from gathered rows, streamed over ``Hd`` in ``BK`` slices,
multiplies them with the matching ``W2`` tile on the tensor cores (``tl.dot``), adds the
bias and applies the ReLU in the epilogue, and folds the result into an online softmax per
(graph, head), reducing over the sources in registers. Only ``O`` and ``lse`` are stored (or,
for a chunk of a split row, a partial ``O`` and ``lse`` that ``_merge_kernel`` combines).
"""

from __future__ import annotations

import triton
import triton.language as tl

from rstg_fast.ops.backends.triton import configs

# Non-finite values propagate as in the reference (PyTorch): relu(nan) = nan and a max that
# keeps NaN. Triton's tl.maximum / tl.max default to the max that returns the non-NaN operand
# (PTX max.f32, np.fmax in the interpreter), which turned a NaN message into 0; NAN_MAX is the
# same instruction with NaN propagation (max.NaN.f32).
NAN_MAX = tl.constexpr(tl.PropagateNan.ALL)


@triton.jit
def _max_keep_nan(a, b):
    return tl.maximum(a, b, propagate_nan=NAN_MAX)


@triton.autotune(configs=configs.FORWARD, key=["Hd", "D", "A", "HEADS", "HAS_W2"], do_bench=configs.quick_bench)
@triton.jit
def _forward_kernel(
    S,  # [G, N, Hd] source term
    R,  # [G, N, Hd] destination term
    Q,  # [G, N, A] queries
    K,  # [G, N, A] keys
    W2,  # [D, Hd] second send layer (unused when not HAS_W2)
    B2,  # [D] its bias
    IDX,  # [E] int64 sources, CSR by destination
    ITEMS,  # [n_items, 4] int32 (row, start, end, slot)
    O,  # [G, N, D] output, input dtype
    LSE,  # [G, N, HEADS] log-sum-exp, ACC dtype
    OP,  # [G, P, D] partial outputs of split rows, ACC dtype
    LSEP,  # [G, P, HEADS] their log-sum-exps
    G,
    N,
    P,
    Hd,
    D,
    A,  # sizes; P = number of partial slots
    SCALE,  # [1] ACC score scale: a tensor, see launch_forward.scale_tensor
    HEADS: tl.constexpr,
    HAS_W2: tl.constexpr,
    BA: tl.constexpr,  # power of two >= A // HEADS
    ACC: tl.constexpr,  # accumulation dtype: float32, or float64 for float64 inputs
    DOT: tl.constexpr,  # tl.dot operand dtype: the input dtype (float32 for bfloat16 in the interpreter)
    INPUT_PRECISION: tl.constexpr,  # tl.dot precision for float32 inputs: "ieee" or "tf32"
    BG: tl.constexpr,
    BE: tl.constexpr,
    BD: tl.constexpr,
    BK: tl.constexpr,
):
    scale = tl.load(SCALE)  # in ACC: float64 exact for float64 inputs
    M: tl.constexpr = BG * BE
    item = tl.program_id(0)
    Dh = D // HEADS
    Ah = A // HEADS
    n_db = tl.cdiv(Dh, BD)
    head = tl.program_id(2) // n_db
    d_blk = tl.program_id(2) % n_db

    row = tl.load(ITEMS + item * 4).to(tl.int64)
    start = tl.load(ITEMS + item * 4 + 1)
    end = tl.load(ITEMS + item * 4 + 2)
    slot = tl.load(ITEMS + item * 4 + 3)

    g = tl.program_id(1) * BG + tl.arange(0, BG)  # [BG]
    g_ok = g < G
    g64 = g.to(tl.int64)
    r = tl.arange(0, M)  # [M] tile row = (graph, edge) pair
    g_r = (tl.program_id(1) * BG + r // BE).to(tl.int64)  # [M]
    g_r_ok = g_r < G
    e_r = r % BE  # [M]

    a_off = head * Ah + tl.arange(0, BA)  # [BA] this head's attention columns
    a_ok = tl.arange(0, BA) < Ah
    q = tl.load(Q + (g64[:, None] * N + row) * A + a_off[None, :], mask=g_ok[:, None] & a_ok[None, :], other=0.0)
    q = q.to(ACC)  # [BG, BA]

    d_in = d_blk * BD + tl.arange(0, BD)  # [BD] column within the head
    d_ok = d_in < Dh
    cols = head * Dh + d_in  # [BD] column of O / row of W2
    if HAS_W2:
        bias = tl.load(B2 + cols, mask=d_ok, other=0.0).to(ACC)  # [BD]

    m_run = tl.full([BG], float("-inf"), ACC)  # running max of the scores
    l_run = tl.zeros([BG], ACC)  # running sum of exp(score - m_run)
    acc = tl.zeros([BG, BD], ACC)  # running sum of exp(score - m_run) * message

    for e0 in range(start, end, BE):
        e = e0 + e_r  # [M]
        ok = (e < end) & g_r_ok  # [M]
        j = tl.load(IDX + e, mask=ok, other=0)  # [M] int64 source node
        src = g_r * N + j  # [M] row of S / K
        dst = g_r * N + row  # [M] row of R

        k = tl.load(K + src[:, None] * A + a_off[None, :], mask=ok[:, None] & a_ok[None, :], other=0.0)
        k3 = tl.reshape(k.to(ACC), (BG, BE, BA))
        s = tl.sum(q[:, None, :] * k3, axis=2) * scale  # [BG, BE]
        s = tl.where(tl.reshape(ok, (BG, BE)), s, float("-inf"))
        m_new = tl.maximum(m_run, tl.reduce(s, 1, _max_keep_nan), propagate_nan=NAN_MAX)  # [BG]
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp(s - m_safe[:, None])  # [BG, BE]; 0 on masked edges
        alpha = tl.exp(m_run - m_safe)  # [BG]; 0 before the first edge
        l_run = l_run * alpha + tl.sum(p, axis=1)
        m_run = m_new

        if HAS_W2:
            z = tl.zeros([M, BD], ACC)
            # R's row is loaded once per graph and broadcast over the BE edges (fewer pointers).
            for k0 in range(0, Hd, BK):
                kk = k0 + tl.arange(0, BK)  # [BK]
                k_ok = kk < Hd
                hs = tl.load(S + src[:, None] * Hd + kk[None, :], mask=ok[:, None] & k_ok[None, :], other=0.0)
                hr = tl.load(
                    R + (g64[:, None] * N + row) * Hd + kk[None, :], mask=g_ok[:, None] & k_ok[None, :], other=0.0
                )
                hr = tl.reshape(tl.broadcast_to(hr.to(ACC)[:, None, :], (BG, BE, BK)), (M, BK))
                h = tl.maximum(hs.to(ACC) + hr, 0.0, propagate_nan=NAN_MAX).to(DOT)  # [M, BK]
                w = tl.load(W2 + cols[None, :] * Hd + kk[:, None], mask=d_ok[None, :] & k_ok[:, None], other=0.0)
                z = tl.dot(h, w.to(DOT), acc=z, input_precision=INPUT_PRECISION)  # [M, BD] += [M, BK] @ [BK, BD]
            msg = tl.maximum(z + bias[None, :], 0.0, propagate_nan=NAN_MAX)  # [M, BD]
        else:
            hs = tl.load(S + src[:, None] * Hd + cols[None, :], mask=ok[:, None] & d_ok[None, :], other=0.0)
            hr = tl.load(R + dst[:, None] * Hd + cols[None, :], mask=ok[:, None] & d_ok[None, :], other=0.0)
            msg = tl.maximum(hs.to(ACC) + hr.to(ACC), 0.0, propagate_nan=NAN_MAX)  # [M, BD]
        # Masked rows (past the row's end or G) have p = 0 but a message of b2 (+ 0 @ W2):
        # 0 * inf or 0 * nan there would add a NaN the reference does not have.
        weighted = tl.where(ok[:, None], msg * tl.reshape(p, (M,))[:, None], 0.0)
        acc = acc * alpha[:, None] + tl.sum(tl.reshape(weighted, (BG, BE, BD)), axis=1)

    # A whole row whose every score is -inf: the reference's exp(-inf - -inf) makes it NaN. (A
    # chunk of a split row keeps weight 0 instead, like the reference's edges below the row's
    # max; the merge decides.) l_run is 0 for an empty row or such a chunk, NaN after a NaN score.
    l_run = tl.where((m_run == float("-inf")) & (end > start) & (slot < 0), float("nan"), l_run)
    out = acc / tl.where(l_run == 0.0, 1.0, l_run)[:, None]  # [BG, BD]; 0 for an empty row
    lse = m_run + tl.log(l_run)  # [BG]; -inf for an empty row
    lse_mask = g_ok & ((g * 0 + d_blk) == 0)  # one program per head stores lse
    out_mask = g_ok[:, None] & d_ok[None, :]
    if slot < 0:
        tl.store(O + (g64[:, None] * N + row) * D + cols[None, :], out.to(O.dtype.element_ty), mask=out_mask)
        tl.store(LSE + (g64 * N + row) * HEADS + head, lse, mask=lse_mask)
    else:
        tl.store(OP + (g64[:, None] * P + slot) * D + cols[None, :], out, mask=out_mask)
        tl.store(LSEP + (g64 * P + slot) * HEADS + head, lse, mask=lse_mask)


@triton.jit
def _merge_kernel(
    OP,  # [G, P, D] partial outputs, each normalised over its own chunk
    LSEP,  # [G, P, HEADS] their log-sum-exps
    MERGES,  # [n_split_rows, 3] int32 (row, first slot, number of slots)
    O,  # [G, N, D] output
    LSE,  # [G, N, HEADS]
    G,
    N,
    P,
    D,
    HEADS: tl.constexpr,
    ACC: tl.constexpr,
    BG: tl.constexpr,
    BD: tl.constexpr,
):
    """Combine the chunks of split rows: ``O = sum_c exp(lse_c - lse) O_c``, ``lse = logsumexp_c lse_c``."""
    row = tl.load(MERGES + tl.program_id(0) * 3).to(tl.int64)
    first = tl.load(MERGES + tl.program_id(0) * 3 + 1)
    count = tl.load(MERGES + tl.program_id(0) * 3 + 2)
    g = (tl.program_id(1) * BG + tl.arange(0, BG)).to(tl.int64)  # [BG]
    g_ok = g < G
    Dh = D // HEADS
    for head in tl.static_range(HEADS):
        m = tl.full([BG], float("-inf"), ACC)
        for c in range(first, first + count):
            m = tl.maximum(m, tl.load(LSEP + (g * P + c) * HEADS + head, mask=g_ok, other=0.0), propagate_nan=NAN_MAX)
        # A split row has edges: m = -inf means every score was -inf, and exp(-inf - -inf) = NaN
        # then, as in the reference; a NaN chunk makes m NaN.
        total = tl.zeros([BG], ACC)
        for c in range(first, first + count):
            total += tl.exp(tl.load(LSEP + (g * P + c) * HEADS + head, mask=g_ok, other=0.0) - m)
        lse = m + tl.log(total)  # [BG]
        tl.store(LSE + (g * N + row) * HEADS + head, lse, mask=g_ok)
        for d0 in range(0, Dh, BD):
            d_in = d0 + tl.arange(0, BD)
            cols = head * Dh + d_in
            mask = g_ok[:, None] & (d_in < Dh)[None, :]
            out = tl.zeros([BG, BD], ACC)
            for c in range(first, first + count):
                w = tl.exp(tl.load(LSEP + (g * P + c) * HEADS + head, mask=g_ok, other=float("-inf")) - lse)  # [BG]
                part = tl.load(OP + (g[:, None] * P + c) * D + cols[None, :], mask=mask, other=0.0)
                out += w[:, None] * part
            tl.store(O + (g[:, None] * N + row) * D + cols[None, :], out.to(O.dtype.element_ty), mask=mask)
