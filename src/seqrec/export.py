"""Export a trained model to ONNX, and check the export against PyTorch.

The graph takes the left-padded item indices of a batch and returns the score of every item::

    input  "items":  int64[B, maxlen]  left-padded with 0 (most recent item in the last column;
                     item indices 1..C from the run's vocab.json, see Recommender.pad)
    output "scores": float32[B, C]     scores[b, j] = h_b . E_{j+1}, h_b = encode(items)[b, -1]

The batch dimension is dynamic, the width is fixed to ``maxlen``. History masking and top-k are
left to the caller (they are cheap and depend on the application). The file's metadata
(``metadata_props``) records ``seqrec.maxlen``, ``seqrec.n_items``, ``seqrec.model`` (the model
config as JSON) and, when exported from a run, ``seqrec.items``: the JSON list of raw ids,
column ``j`` being ``items[j]``.

The TorchScript-based exporter (``dynamo=False``) is used: the dynamo exporter needs the
``onnxscript`` package, which is not a dependency. SASRec's boolean attention mask is exported
as is (``scaled_dot_product_attention`` with a bool mask, opset >= 14). Files are written
atomically. Models over 2 GB (protobuf's limit) would need ONNX external data, not supported.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from seqrec import runs
from seqrec.errors import SeqrecError
from seqrec.io import atomic_write
from seqrec.models.base import SequentialRecommender

OPSET = 17


class ScoreGraph(nn.Module):
    """What is exported: items int64[B, L] -> scores float[B, C] at the last position."""

    def __init__(self, model: SequentialRecommender) -> None:
        super().__init__()
        self.model = model

    def forward(self, items: Tensor) -> Tensor:
        h = self.model.encode(items)[:, -1, :]  # (B, d)
        return h @ self.model.item_embeddings()[1:].T  # (B, C)


def export_model_onnx(
    model: SequentialRecommender,
    maxlen: int,
    out_path: str | Path,
    *,
    metadata: dict[str, str] | None = None,
    opset: int = OPSET,
) -> Path:
    """Export ``model`` (in eval mode) as the graph above to ``out_path``, atomically."""
    import onnx

    out_path = Path(out_path)
    was_training = model.training
    model.eval()
    graph = ScoreGraph(model).eval()
    example = torch.zeros(2, maxlen, dtype=torch.int64)  # (2, maxlen)
    example[0, -3:] = torch.tensor([1, 2, 3]) % model.n_items + 1
    example[1, -1] = 1

    def write(tmp: str) -> None:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks: L is fixed
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter itself
            # GRU: h0 is zeros, not an input, so any batch size runs (tested at 1, 3, 100)
            warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size")
            torch.onnx.export(
                graph,
                (example,),
                tmp,
                input_names=["items"],
                output_names=["scores"],
                dynamic_axes={"items": {0: "batch"}, "scores": {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
        proto = onnx.load(tmp)
        _bool_eyelike_via_float(proto)
        props = {"seqrec.maxlen": str(maxlen), "seqrec.n_items": str(model.n_items)}
        props.update(metadata or {})
        for key, value in props.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp)

    try:
        atomic_write(out_path, write)
    except SeqrecError:
        raise
    except Exception as exc:  # the exporter's own errors are long; keep the cause
        raise SeqrecError(f"ONNX export to {out_path} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        model.train(was_training)
    return out_path


def _bool_eyelike_via_float(proto: Any) -> int:
    """Rewrite every bool ``EyeLike`` as ``Cast(EyeLike(Cast(x, float), dtype=float), bool)``.

    ``torch.eye(L, dtype=torch.bool)`` (SASRec's attention diagonal) exports as an EyeLike on a
    bool tensor, which onnxruntime does not implement. Returns how many nodes were rewritten.
    """
    from onnx import TensorProto, helper, shape_inference

    inferred = shape_inference.infer_shapes(proto)
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    }
    out, changed = [], 0
    for node in proto.graph.node:
        if node.op_type != "EyeLike" or types.get(node.output[0]) != TensorProto.BOOL:
            out.append(node)
            continue
        name, src, dst = node.name or f"EyeLike{changed}", node.input[0], node.output[0]
        out.append(helper.make_node("Cast", [src], [f"{name}_in"], to=TensorProto.FLOAT))
        kept = [a for a in node.attribute if a.name != "dtype"]
        eye = helper.make_node("EyeLike", [f"{name}_in"], [f"{name}_float"], name=name)
        eye.attribute.extend(kept)
        eye.attribute.append(helper.make_attribute("dtype", TensorProto.FLOAT))
        out.append(eye)
        out.append(helper.make_node("Cast", [f"{name}_float"], [dst], to=TensorProto.BOOL))
        changed += 1
    if changed:
        del proto.graph.node[:]
        proto.graph.node.extend(out)
    return changed


def export_onnx(run_dir: str | Path, out_path: str | Path | None = None) -> Path:
    """Export ``run_dir``'s best checkpoint; default ``out_path`` is ``RUN_DIR/best/model.onnx``."""
    run_dir = Path(run_dir)
    cfg = runs.load_run_config(run_dir)
    model, meta = runs.load_checkpoint(run_dir / runs.BEST)
    out = Path(out_path) if out_path is not None else run_dir / runs.BEST / "model.onnx"
    extra = {"seqrec.model": json.dumps(meta["model"]), "seqrec.run": run_dir.name}
    vocab = run_dir / runs.BEST / "vocab.json"
    if vocab.exists():
        extra["seqrec.items"] = json.dumps(json.loads(vocab.read_text())["items"])
    return export_model_onnx(model, cfg.model.maxlen, out, metadata=extra)


def onnx_session(path: str | Path, *, threads: int = 1) -> Any:
    """An onnxruntime CPU session for an exported file."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class Parity:
    """ONNX vs PyTorch on the same inputs.

    n: rows compared. max_abs_diff: max |score_onnx - score_torch| over all rows and items.
    topk_exact: fraction of rows whose top-k item lists (in order) are identical.
    unexplained: rows whose top-k *sets* differ by more than score noise: some item ONNX puts in
        its top-k has a PyTorch score below PyTorch's k-th score by more than ``tol``.
    """

    n: int
    k: int
    max_abs_diff: float
    topk_exact: float
    unexplained: int

    def ok(self, tol: float = 1e-4) -> bool:
        return self.max_abs_diff <= tol and self.unexplained == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_parity(
    model: SequentialRecommender,
    onnx_path: str | Path,
    items: np.ndarray,
    *,
    k: int = 10,
    tol: float = 1e-4,
    batch_size: int = 256,
    threads: int = 1,
) -> Parity:
    """Compare the exported graph with ``model`` on left-padded inputs int64[N, maxlen]."""
    items = np.ascontiguousarray(items, dtype=np.int64)
    if items.ndim != 2 or len(items) == 0:
        raise SeqrecError(
            f"check_parity: items must be int64[N, maxlen] with N >= 1, got {items.shape}"
        )
    session = onnx_session(onnx_path, threads=threads)
    graph = ScoreGraph(model).eval()
    max_diff, exact, unexplained = 0.0, 0, 0
    for start in range(0, len(items), batch_size):
        x = items[start : start + batch_size]  # (b, L)
        with torch.inference_mode():
            ref = graph(torch.from_numpy(x)).numpy()  # (b, C)
        (got,) = session.run(["scores"], {"items": x})  # (b, C)
        if got.shape != ref.shape:
            raise SeqrecError(f"check_parity: ONNX gave scores {got.shape}, PyTorch {ref.shape}")
        max_diff = max(max_diff, float(np.max(np.abs(got - ref))))
        kk = min(k, ref.shape[1])
        top_ref, top_got = _topk(ref, kk), _topk(got, kk)  # (b, k) each
        exact += int(np.all(top_ref == top_got, axis=1).sum())
        kth = np.take_along_axis(ref, top_ref[:, -1:], axis=1)  # (b, 1) torch's k-th score
        got_in_ref = np.take_along_axis(ref, top_got, axis=1)  # (b, k) torch scores of ONNX picks
        unexplained += int(np.any(got_in_ref < kth - tol, axis=1).sum())
    return Parity(
        n=len(items), k=k, max_abs_diff=max_diff, topk_exact=exact / len(items),
        unexplained=unexplained,
    )  # fmt: skip


def _topk(scores: np.ndarray, k: int) -> np.ndarray:
    """int64[b, k]: column indices of the k largest scores of each row, best first."""
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (b, k), unordered
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def check_run_parity(
    run_dir: str | Path,
    onnx_path: str | Path,
    histories: list[list[str]],
    *,
    k: int = 10,
    tol: float = 1e-4,
) -> Parity:
    """:func:`check_parity` for a run on raw-id histories (mapped and padded as the recommender
    does)."""
    from seqrec.recommend import Recommender

    rec = Recommender.from_run(run_dir)
    return check_parity(rec.model, onnx_path, rec.pad(histories), k=k, tol=tol)
