"""seqrec's models against RecBole's with the same weights: the same outputs and gradients?

Li et al. 2023 ran SASRec from S3-Rec's code and GRU4Rec from RecBole. RecBole's SASRec is the
same network as S3-Rec's (BERT's post-LN block, GELU feed-forward 4d wide, embedding LayerNorm);
seqrec has it as ``SASRec(block="bert")``, and RecBole's GRU4Rec (bias-free GRU, a dense layer
after it) as ``GRU4Rec(variant="recbole")``. This script builds RecBole 1.2.1's own ``SASRec``
and ``GRU4Rec`` classes (with a dict for their config and a stub for their dataset: nothing else
of RecBole runs), copies their freshly initialised weights into seqrec's model, and compares, in
float64 and eval mode:

- the hidden state at every real position of left-padded rows of every length 1..maxlen (RecBole's
  ``forward`` returns column ``len - 1``, so asking it for column j gives position j; SASRec's
  positions then follow S3-Rec's layout, the last item in column maxlen - 1; GRU4Rec's left
  padding in RecBole would run the GRU over the padding, so it gets the rows right-aligned, its
  own layout), against seqrec's ``encode`` and its packed ``encode_last``;
- the gradients of a full-softmax CE at the last position with respect to every parameter.

Run it with the RecBole venv's Python (seqrec is imported from ``src/``; RecBole is not a
dependency of seqrec)::

    /path/to/recbole-venv/bin/python benchmarks/check_models_vs_recbole.py

Writes ``benchmarks/results/models_vs_recbole.{json,md}``. Exits 1 if any difference exceeds
the tolerance.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from _common import machine, write_result  # noqa: E402
from seqrec.models import GRU4Rec, SASRec  # noqa: E402
from seqrec.models.base import SequentialRecommender  # noqa: E402

TOLERANCE = 1e-10  # float64: both sides compute the same function in a different order
DIM, LAYERS, HEADS, MAXLEN = 64, 2, 2, 50  # Li et al.'s sizes (GRU4Rec: 1 layer there; 2 here)


class _Dataset:
    """What RecBole's SequentialRecommender asks of its dataset: the item count with padding."""

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items

    def num(self, field: str) -> int:
        return self.n_items + 1


def _recbole_config(**model: Any) -> dict[str, Any]:
    return {
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "LIST_SUFFIX": "_list",
        "ITEM_LIST_LENGTH_FIELD": "item_length",
        "NEG_PREFIX": "neg_",
        "MAX_ITEM_LIST_LENGTH": MAXLEN,
        "device": "cpu",
        "loss_type": "CE",
        **model,
    }


def sasrec_pair(n_items: int) -> tuple[SequentialRecommender, Any, dict[str, Any]]:
    """(seqrec SASRec block "bert", RecBole SASRec, seqrec name -> RecBole parameter)."""
    from recbole.model.sequential_recommender.sasrec import SASRec as RecBoleSASRec

    theirs = RecBoleSASRec(
        _recbole_config(
            n_layers=LAYERS,
            n_heads=HEADS,
            hidden_size=DIM,
            inner_size=4 * DIM,
            hidden_dropout_prob=0.5,
            attn_dropout_prob=0.5,
            hidden_act="gelu",
            layer_norm_eps=1e-12,
            initializer_range=0.02,
        ),
        _Dataset(n_items),
    )
    ours = SASRec(
        n_items, dim=DIM, layers=LAYERS, heads=HEADS, dropout=0.5, maxlen=MAXLEN, block="bert"
    )
    pairs = {
        "item_emb.weight": theirs.item_embedding.weight,
        "pos_emb.weight": theirs.position_embedding.weight,
        "emb_norm.weight": theirs.LayerNorm.weight,
        "emb_norm.bias": theirs.LayerNorm.bias,
    }
    for i, layer in enumerate(theirs.trm_encoder.layer):
        att, ffn = layer.multi_head_attention, layer.feed_forward
        for name, module in {
            "attn.q_proj": att.query,
            "attn.k_proj": att.key,
            "attn.v_proj": att.value,
            "attn.out_proj": att.dense,
            "attn_norm": att.LayerNorm,
            "fc1": ffn.dense_1,
            "fc2": ffn.dense_2,
            "ffn_norm": ffn.LayerNorm,
        }.items():
            pairs[f"blocks.{i}.{name}.weight"] = module.weight
            pairs[f"blocks.{i}.{name}.bias"] = module.bias
    return ours, theirs, pairs


def gru4rec_pair(n_items: int) -> tuple[SequentialRecommender, Any, dict[str, Any]]:
    """(seqrec GRU4Rec variant "recbole", RecBole GRU4Rec, seqrec name -> RecBole parameter)."""
    from recbole.model.sequential_recommender.gru4rec import GRU4Rec as RecBoleGRU4Rec

    theirs = RecBoleGRU4Rec(
        _recbole_config(embedding_size=DIM, hidden_size=DIM, num_layers=LAYERS, dropout_prob=0.3),
        _Dataset(n_items),
    )
    ours = GRU4Rec(n_items, dim=DIM, layers=LAYERS, dropout=0.3, maxlen=MAXLEN, variant="recbole")
    pairs = {
        "item_emb.weight": theirs.item_embedding.weight,
        "head.weight": theirs.dense.weight,
        "head.bias": theirs.dense.bias,
    }
    for name, param in theirs.gru_layers.named_parameters():
        pairs[f"gru.{name}"] = param
    return ours, theirs, pairs


def left_padded(n_rows: int, n_items: int, seed: int) -> torch.Tensor:
    """int64 (n_rows, MAXLEN): rows of every length 1..MAXLEN, items right-aligned."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n_rows, MAXLEN, dtype=torch.long)
    for b in range(n_rows):
        n = 1 + b % MAXLEN
        x[b, MAXLEN - n :] = torch.randint(1, n_items + 1, (n,), generator=g)
    return x


def compare(
    build: Callable[[int], tuple[SequentialRecommender, Any, dict[str, Any]]],
    *,
    items: int,
    rows: int,
    seed: int,
    left_aligned_for_recbole: bool,
) -> dict[str, Any]:
    """Copy RecBole's weights into seqrec's model and measure the largest differences."""
    torch.manual_seed(seed)
    ours, theirs, pairs = build(items)
    mine = dict(ours.named_parameters())
    if set(mine) != set(pairs):
        raise SystemExit(f"parameter sets differ: {sorted(set(mine) ^ set(pairs))}")
    if sum(p.numel() for p in theirs.parameters()) != sum(p.numel() for p in mine.values()):
        raise SystemExit("parameter counts differ")
    ours, theirs = ours.double().eval(), theirs.double().eval()
    mine = dict(ours.named_parameters())
    with torch.no_grad():
        for name, other in pairs.items():
            mine[name].copy_(other)

    x = left_padded(rows, items, seed)  # (B, MAXLEN), seqrec's layout
    lengths = (x != 0).sum(dim=1)  # (B,)
    if left_aligned_for_recbole:  # S3-Rec's layout: positions as in seqrec
        theirs_x, column = x, lambda j, n: torch.full_like(n, j + 1)
    else:  # RecBole's own: items first, padding after
        theirs_x = torch.stack([torch.roll(row, -int((row == 0).sum())) for row in x])
        column = lambda j, n: j + 1 - (MAXLEN - n)  # noqa: E731 (column j's item, right-aligned)
    with torch.no_grad():
        ours_all = ours.encode(x)  # (B, MAXLEN, d)
        worst_position = 0.0
        for j in range(MAXLEN):
            real = x[:, j] != 0
            if real.any():
                theirs_j = theirs(theirs_x[real], column(j, lengths[real]))  # (R, d)
                diff = (theirs_j - ours_all[real, j]).abs().max().item()
                worst_position = max(worst_position, diff)
        theirs_last = theirs(theirs_x, column(MAXLEN - 1, lengths))
        last_packed = (theirs_last - ours.encode_last(x)).abs().max().item()

    target = torch.randint(1, items + 1, (rows,), generator=torch.Generator().manual_seed(1))
    theirs_table = theirs.item_embedding.weight
    F.cross_entropy(
        theirs(theirs_x, column(MAXLEN - 1, lengths)) @ theirs_table.T, target
    ).backward()
    F.cross_entropy(ours.encode_last(x) @ ours.item_embeddings().T, target).backward()
    # relative to the largest gradient entry of any parameter: some gradients are 0 in exact
    # arithmetic (SASRec's key biases shift a row's attention logits alike) and ~1e-17 in
    # floats, so a per-parameter scale would compare rounding noise with itself
    scale = max(p.grad.abs().max().item() for p in pairs.values())
    gradients = {
        name: (mine[name].grad - other.grad).abs().max().item() / scale
        for name, other in pairs.items()
    }
    worst_gradient = max(gradients.values())
    return {
        "parameters": len(pairs),
        "max_abs_diff_hidden_every_position": worst_position,
        "max_abs_diff_last_position_packed": last_packed,
        "max_rel_diff_gradient": worst_gradient,
        "rel_diff_gradient_per_parameter": gradients,
        "ok": max(worst_position, last_packed, worst_gradient) <= TOLERANCE,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import recbole

    settings = {"items": args.items, "rows": args.rows, "seed": args.seed}
    results = {
        'SASRec, `block = "bert"`': compare(sasrec_pair, **settings, left_aligned_for_recbole=True),
        'GRU4Rec, `gru_variant = "recbole"`': compare(
            gru4rec_pair, **settings, left_aligned_for_recbole=False
        ),
    }
    ok = all(r["ok"] for r in results.values())
    payload = {
        "machine": machine(),
        "recbole": recbole.__version__,
        "settings": {
            **settings,
            "dim": DIM,
            "layers": LAYERS,
            "heads": HEADS,
            "maxlen": MAXLEN,
            "dtype": "float64",
        },
        "tolerance": TOLERANCE,
        "models": results,
        "ok": ok,
    }
    rows = "\n".join(
        f"| {model} | {r['max_abs_diff_hidden_every_position']:.1e} | "
        f"{r['max_abs_diff_last_position_packed']:.1e} | {r['max_rel_diff_gradient']:.1e} "
        f"({r['parameters']} parameters) | {'same' if r['ok'] else 'DIFFERENT'} |"
        for model, r in results.items()
    )
    markdown = f"""# seqrec's models against RecBole {recbole.__version__}'s, with the same weights

RecBole's own model classes, freshly initialised; their weights copied into seqrec's model;
float64, eval mode, {args.rows} left-padded rows of lengths 1–{MAXLEN} over {args.items} items;
d = {DIM}, {LAYERS} layers, {HEADS} heads (SASRec), maxlen {MAXLEN}. Hidden states: the largest
absolute difference at every real position (seqrec's padded `encode`) and at the last one
(seqrec's packed `encode_last`). Gradients: full-softmax CE at the last position, the largest
difference relative to the largest gradient entry.

| seqrec model | hidden, every position | hidden, last (packed) | gradients | verdict |
|---|---|---|---|---|
{rows}

Tolerance {TOLERANCE:.0e}. Rerun: `RECBOLE_VENV/bin/python benchmarks/check_models_vs_recbole.py`
(seqrec at {payload["machine"]["git_commit"]}, torch {payload["machine"]["torch"]}).
"""
    js, md = write_result("models_vs_recbole", payload, markdown)
    print(markdown)
    print(f"wrote {js} and {md}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
