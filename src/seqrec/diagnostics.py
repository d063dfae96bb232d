"""Per-epoch diagnostics the papers argue with: the exact full-softmax CE on the validation
targets, and the Xu et al. 2024 bound between CE and NDCG.

For a validation example with hidden state h (the last position of its history, as in
evaluation), target t and scores s_j = h · w_j over **all** C items (no history masking, so the
candidate set is the one the CE softmax runs over):

    CE            = log Σ_{j=1..C} exp(s_j) - s_t                       (exact, item-chunked)
    rank          = 1 + #{j ≠ t : s_j >= s_t}                          (ties count against t)
    NDCG          = 1 / log2(1 + rank)                                  (untruncated, full ranking)

Xu et al. 2024, Proposition 4.1: minimising CE maximises a lower bound of NDCG, because
1[s_j >= s_t] <= exp(s_j - s_t) gives rank <= Σ_j exp(s_j - s_t) = exp(CE), and
log2(1 + r) <= r for r >= 1, so for every example

    -log NDCG <= log rank <= CE.

:func:`validation_diagnostics` returns, averaged over the validation examples,
``valid_ce`` (mean CE), ``valid_neg_log_ndcg`` (mean -log NDCG, natural log) and
``xu_bound_holds`` (mean -log NDCG <= mean CE), plus ``xu_bound_violations``, the number of
examples whose own -log NDCG exceeds their own CE by more than float tolerance (always 0 unless
something is broken). The bound does not apply to truncated NDCG@k (it is 0, and -log 0 = inf,
beyond rank k), so the untruncated NDCG is used. Pessimistic ties make it the strongest form.

Memory: one (batch_size, chunk_size) score block; never a users × items matrix.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from seqrec.data.batching import left_pad
from seqrec.data.sequences import EvalSet
from seqrec.errors import SeqrecError
from seqrec.models.base import SequentialRecommender

#: slack for the per-example check -log NDCG <= CE in float32
_TOL = 1e-4


def ce_and_rank(
    hidden: Tensor, item_table: Tensor, targets: Tensor, *, chunk_size: int = 2048
) -> tuple[Tensor, Tensor]:
    """Per-row exact CE over items 1..C and pessimistic rank of the target, in item chunks.

    hidden: (n, d); item_table: (C + 1, d), row 0 = padding (never a candidate); targets: (n,)
    in 1..C. Returns ce float64 (n,) and rank int64 (n,) with rank = 1 + #{j ≠ t : s_j >= s_t}.
    Naive equivalent: ``s = hidden @ item_table[1:].T; ce = logsumexp(s, 1) - s[i, t_i - 1]``.
    """
    n = hidden.shape[0]
    weight = item_table[1:]  # (C, d)
    c = weight.shape[0]
    pos = (hidden * item_table[targets]).sum(1)  # (n,) target scores
    m = pos.clone()  # (n,) running max (starts at the target score, a finite lower bound)
    s = torch.zeros_like(pos)  # (n,) running Σ exp(s_j - m)
    rank = torch.ones(n, dtype=torch.int64)  # (n,)
    cols = (targets - 1).unsqueeze(1)  # (n, 1) target column
    for start in range(0, c, chunk_size):
        block = hidden @ weight[start : start + chunk_size].T  # (n, c')
        top = torch.maximum(m, block.amax(1))  # (n,)
        s = s * torch.exp(m - top) + torch.exp(block - top.unsqueeze(1)).sum(1)
        m = top
        local = cols - start  # (n, 1) target column within this chunk (may be outside)
        inside = (local >= 0) & (local < block.shape[1])  # (n, 1)
        own = torch.arange(block.shape[1]).unsqueeze(0) == local  # (n, c') target's own cell
        ge = (block >= pos.unsqueeze(1)) & ~(own & inside)  # (n, c')
        rank += ge.sum(1)
    ce = (m + torch.log(s) - pos).double()  # (n,)
    return ce, rank


def validation_diagnostics(
    model: SequentialRecommender,
    eval_set: EvalSet,
    *,
    maxlen: int,
    batch_size: int = 512,
    chunk_size: int = 2048,
) -> dict[str, float | bool | int]:
    """Exact full CE on the validation targets and the Xu et al. bound check (see module doc).

    The model is put in eval mode (no dropout) for the pass and restored afterwards.
    Returns ``{"valid_ce", "valid_neg_log_ndcg", "xu_bound_holds", "xu_bound_violations"}``.
    """
    n = len(eval_set)
    if n == 0:
        raise SeqrecError("diagnostics: the validation set is empty")
    targets_all = torch.from_numpy(np.asarray(eval_set.targets, dtype=np.int64))  # (n,)
    ce_sum, nln_sum, violations = 0.0, 0.0, 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            table = model.item_embeddings().float()  # (C + 1, d)
            order = np.argsort(eval_set.inputs.lengths(), kind="stable")  # similar lengths
            for start in range(0, n, batch_size):
                rows = order[start : start + batch_size]  # sums do not depend on the order
                x = torch.from_numpy(left_pad(eval_set.inputs, rows, maxlen))  # trimmed
                hidden = model.encode_last(x).float()  # (b, d) last position
                ce, rank = ce_and_rank(
                    hidden, table, targets_all[rows], chunk_size=chunk_size
                )  # (b,), (b,)
                neg_log_ndcg = torch.log(torch.log2(1.0 + rank.double()))  # (b,)
                ce_sum += float(ce.sum())
                nln_sum += float(neg_log_ndcg.sum())
                violations += int((neg_log_ndcg > ce + _TOL).sum())
    finally:
        model.train(was_training)
    valid_ce, valid_nln = ce_sum / n, nln_sum / n
    if not math.isfinite(valid_ce):
        raise SeqrecError(f"diagnostics: the validation CE is {valid_ce}; the model diverged")
    return {
        "valid_ce": valid_ce,
        "valid_neg_log_ndcg": valid_nln,
        "xu_bound_holds": bool(valid_nln <= valid_ce + _TOL),
        "xu_bound_violations": violations,
    }
