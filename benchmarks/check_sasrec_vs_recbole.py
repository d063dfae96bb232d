"""seqrec's SASRec with ``block="bert"`` against RecBole's SASRec: same weights, same outputs?

Li et al. 2023 ran SASRec from S3-Rec's code; RecBole's SASRec is the same network (BERT's
post-LN block, GELU feed-forward 4d wide, embedding LayerNorm, N(0, 0.02) initialisation). This
script builds RecBole 1.2.1's own ``SASRec`` class (with a dict for its config and a stub for its
dataset: nothing else of RecBole runs), copies its freshly initialised weights into seqrec's
``SASRec(block="bert")``, and compares, in float64 and eval mode:

- the hidden state at every real position of left-padded rows of every length (S3-Rec's layout:
  the last item in column maxlen - 1; RecBole's ``forward`` gathers column ``len - 1``, so
  asking it for column j gives position j), against seqrec's padded ``encode`` and its packed
  ``encode_last``;
- the gradients of a full-softmax CE on the last position with respect to every parameter.

Run it with the RecBole venv's Python (seqrec is imported from ``src/``; RecBole is not a
dependency of seqrec)::

    /path/to/recbole-venv/bin/python benchmarks/check_sasrec_vs_recbole.py

Writes ``benchmarks/results/sasrec_bert_vs_recbole.{json,md}``. Exits 1 if any difference
exceeds the tolerance.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from _common import machine, write_result  # noqa: E402
from seqrec.models.sasrec import SASRec  # noqa: E402

TOLERANCE = 1e-10  # float64: both sides compute the same function in a different order


class _Dataset:
    """What RecBole's SequentialRecommender asks of its dataset: the item count with padding."""

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items

    def num(self, field: str) -> int:
        return self.n_items + 1


def recbole_sasrec(n_items: int, dim: int, layers: int, heads: int, maxlen: int) -> Any:
    """RecBole's SASRec as Li et al.'s settings configure it (dropout 0.5 both, GELU, 4d)."""
    from recbole.model.sequential_recommender.sasrec import SASRec as RecBoleSASRec

    config = {
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "LIST_SUFFIX": "_list",
        "ITEM_LIST_LENGTH_FIELD": "item_length",
        "NEG_PREFIX": "neg_",
        "MAX_ITEM_LIST_LENGTH": maxlen,
        "device": "cpu",
        "n_layers": layers,
        "n_heads": heads,
        "hidden_size": dim,
        "inner_size": 4 * dim,
        "hidden_dropout_prob": 0.5,
        "attn_dropout_prob": 0.5,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "initializer_range": 0.02,
        "loss_type": "CE",
    }
    return RecBoleSASRec(config, _Dataset(n_items))


def parameter_pairs(ours: SASRec, theirs: Any) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """seqrec parameter name -> (seqrec tensor, RecBole tensor), for every parameter of both."""
    pairs = {
        "item_emb.weight": theirs.item_embedding.weight,
        "pos_emb.weight": theirs.position_embedding.weight,
        "emb_norm.weight": theirs.LayerNorm.weight,
        "emb_norm.bias": theirs.LayerNorm.bias,
    }
    for i, layer in enumerate(theirs.trm_encoder.layer):
        att, ffn = layer.multi_head_attention, layer.feed_forward
        for ours_name, module in {
            "attn.q_proj": att.query,
            "attn.k_proj": att.key,
            "attn.v_proj": att.value,
            "attn.out_proj": att.dense,
            "attn_norm": att.LayerNorm,
            "fc1": ffn.dense_1,
            "fc2": ffn.dense_2,
            "ffn_norm": ffn.LayerNorm,
        }.items():
            pairs[f"blocks.{i}.{ours_name}.weight"] = module.weight
            pairs[f"blocks.{i}.{ours_name}.bias"] = module.bias
    mine = dict(ours.named_parameters())
    if set(mine) != set(pairs):
        raise SystemExit(f"parameter sets differ: {sorted(set(mine) ^ set(pairs))}")
    theirs_count = sum(p.numel() for p in theirs.parameters())
    if theirs_count != sum(p.numel() for p in mine.values()):
        raise SystemExit("parameter counts differ")
    return {name: (mine[name], pairs[name]) for name in pairs}


def left_padded(n_rows: int, maxlen: int, n_items: int, seed: int) -> torch.Tensor:
    """int64 (n_rows, maxlen): rows of every length 1..maxlen, items right-aligned."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n_rows, maxlen, dtype=torch.long)
    for b in range(n_rows):
        n = 1 + b % maxlen
        x[b, maxlen - n :] = torch.randint(1, n_items + 1, (n,), generator=g)
    return x


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import recbole

    dim, layers, heads, maxlen = 64, 2, 2, 50  # Li et al.'s SASRec
    torch.manual_seed(args.seed)
    theirs = recbole_sasrec(args.items, dim, layers, heads, maxlen).double().eval()
    ours = SASRec(
        args.items, dim=dim, layers=layers, heads=heads, dropout=0.5, maxlen=maxlen, block="bert"
    )
    ours = ours.double().eval()
    pairs = parameter_pairs(ours, theirs)
    with torch.no_grad():
        for mine, other in pairs.values():
            mine.copy_(other)

    x = left_padded(args.rows, maxlen, args.items, args.seed)  # (B, maxlen)
    full = torch.full((args.rows,), maxlen)
    with torch.no_grad():
        ours_all = ours.encode(x)  # (B, maxlen, d)
        worst_position = 0.0
        for j in range(maxlen):  # RecBole's forward returns column len - 1
            real = x[:, j] != 0
            if real.any():
                theirs_j = theirs(x[real], torch.full((int(real.sum()),), j + 1))
                diff = (theirs_j - ours_all[real, j]).abs().max().item()
                worst_position = max(worst_position, diff)
        last_packed = (theirs(x, full) - ours.encode_last(x)).abs().max().item()

    target = torch.randint(
        1, args.items + 1, (args.rows,), generator=torch.Generator().manual_seed(1)
    )
    F.cross_entropy(theirs(x, full) @ theirs.item_embedding.weight.T, target).backward()
    F.cross_entropy(ours.encode_last(x) @ ours.item_embeddings().T, target).backward()
    # relative to the largest gradient entry of any parameter: the key biases' gradients are 0
    # in exact arithmetic (q·b_k shifts a row's attention logits alike) and ~1e-17 in floats,
    # so a per-parameter scale would compare rounding noise with itself
    scale = max(other.grad.abs().max().item() for _, other in pairs.values())
    gradient_diffs = {
        name: (mine.grad - other.grad).abs().max().item() / scale
        for name, (mine, other) in pairs.items()
    }
    worst_gradient = max(gradient_diffs.values())
    ok = max(worst_position, last_packed, worst_gradient) <= TOLERANCE

    payload = {
        "machine": machine(),
        "recbole": recbole.__version__,
        "settings": {
            "items": args.items,
            "rows": args.rows,
            "seed": args.seed,
            "dim": dim,
            "layers": layers,
            "heads": heads,
            "maxlen": maxlen,
            "dtype": "float64",
        },
        "max_abs_diff_hidden_every_position": worst_position,
        "max_abs_diff_last_position_packed": last_packed,
        "max_rel_diff_gradient": worst_gradient,
        "rel_diff_gradient_per_parameter": gradient_diffs,
        "tolerance": TOLERANCE,
        "ok": ok,
    }
    markdown = f"""# seqrec SASRec (`block = "bert"`) against RecBole {recbole.__version__}'s SASRec

The same freshly initialised weights (RecBole's N(0, 0.02) draw, copied into seqrec), float64,
eval mode, {args.rows} left-padded rows of lengths 1–{maxlen} over {args.items} items; d = {dim},
{layers} blocks, {heads} heads, maxlen {maxlen} (Li et al.'s settings).

| compared | max difference |
|---|---|
| hidden state at every real position (seqrec `encode`) | {worst_position:.1e} (absolute) |
| hidden state at the last position (seqrec's packed `encode_last`) | {last_packed:.1e} (absolute) |
| gradient of full-softmax CE at the last position, each of {len(pairs)} parameters | {worst_gradient:.1e} (relative to the largest gradient entry) |

Verdict: {"the same network" if ok else "DIFFERENT"} (tolerance {TOLERANCE:.0e}). Rerun:
`RECBOLE_VENV/bin/python benchmarks/check_sasrec_vs_recbole.py` (seqrec at
{payload["machine"]["git_commit"]}, torch {payload["machine"]["torch"]}).
"""
    js, md = write_result("sasrec_bert_vs_recbole", payload, markdown)
    print(markdown)
    print(f"wrote {js} and {md}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
