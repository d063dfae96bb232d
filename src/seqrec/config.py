"""Run configuration: frozen dataclasses, validated once at the edge.

A config comes from defaults, then a TOML file (``--config``), then command-line flags (flags
win). Unknown keys and bad values raise :class:`ConfigError` with a message that says how to fix
it (including the closest valid key for a typo).
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from seqrec.errors import ConfigError

SPLITS = ("leave-one-out", "temporal")
FORMATS = ("auto", "user-lines", "pairs", "log")
POSITIONS = ("all", "last")
POOLS = ("all", "not-target", "not-history", "in-batch", "popularity", "shared")
#: pools whose proposal q is known in closed form, so sampled-softmax can apply logQ
LOGQ_POOLS = ("all", "not-target", "popularity", "shared")
CE_IMPLS = ("auto", "fused", "torch", "chunked")
HISTORY_PROTOCOLS = ("mask", "keep", "zero")  # the user's history in the ranking: seqrec.evaluate
RESIDUALS = ("query", "input")
PADDING_KEYS = ("masked", "attend")
INITS = ("xavier", "freerec", "normal")
BLOCKS = ("sasrec", "bert")
GRU_VARIANTS = ("plain", "recbole")


@dataclass(frozen=True)
class DataConfig:
    """Where the interactions come from and how they are prepared and split."""

    dataset: str = "synthetic"  # a registered name (see `seqrec data list`) or a file path
    data_dir: str | None = None  # folder of named datasets; default $SEQREC_DATA_DIR
    format: str = "auto"  # auto | user-lines | pairs | log
    sep: str | None = None  # column separator for logs (None: guess from the file)
    user_col: str = "user"  # log column names (or 0-based positions as strings)
    item_col: str = "item"
    time_col: str | None = None
    min_user_interactions: int = 0  # iterative k-core; 0 = off
    min_item_interactions: int = 0
    dedupe_consecutive: bool = False  # drop an item repeated right after itself
    split: str = "leave-one-out"  # leave-one-out | temporal
    valid_quantile: float = 0.8  # temporal split: time quantiles where valid and test start
    test_quantile: float = 0.9
    synthetic_users: int = 3000
    synthetic_items: int = 1000
    synthetic_seed: int = 0


@dataclass(frozen=True)
class ModelConfig:
    name: str = "sasrec"  # see seqrec.models.MODELS
    dim: int = 64
    layers: int = 2
    heads: int = 1
    dropout: float = 0.2
    maxlen: int = 50
    # SASRec variants of the reference codes (see seqrec/models/sasrec.py):
    block: str = (
        "sasrec"  # sasrec: Kang & McAuley's block | bert: post-LN GELU block (S3-Rec, RecBole)
    )
    residual: str = (
        "query"  # query: x = LN(x) + attn (Kang & McAuley, pmixer) | input: x + attn (FreeRec)
    )
    padding_keys: str = (
        "masked"  # masked | attend: queries also see the maxlen window's padding keys
    )
    init: str = (
        "xavier"  # xavier: every matrix xavier_normal_ | freerec: Xu et al.'s | normal: N(0, 0.02)
    )
    # GRU4Rec (see seqrec/models/gru4rec.py): plain | recbole (bias-free GRU + dense head)
    gru_variant: str = "plain"


@dataclass(frozen=True)
class LossConfig:
    name: str = "ce"  # see seqrec.losses.LOSSES
    positions: str = "all"  # all | last
    negatives: int = 1  # K sampled negatives per position (sampled losses)
    pool: str = (
        "all"  # negative pool: all | not-target | not-history | in-batch | popularity | shared
    )
    alpha: float = 100.0  # sce: scale of the sampled normalising term (Xu et al. 2024)
    nce_c: float = 10.0  # nce: logits shifted by log(C/K) - c (Xu et al. 2024)
    gbce_t: float = 0.75  # gbce: calibration t (Petrov & Macdonald 2023)
    logq: bool = False  # sampled-softmax: subtract log(K q(item)) from negatives
    bpr_max_reg: float = 0.0  # bpr-max: score regularisation (Hidasi & Karatzoglou 2018)
    popularity_power: float = 1.0  # popularity pool: q(item) ∝ count^power
    ce_impl: str = "auto"  # ce: auto (= fused) | fused | torch (torch>=2.13) | chunked
    ce_chunk_size: int = 2048  # ce with impl=chunked: items per chunk
    # rece (Gusak et al. 2024); None = the authors' rule n_b = ⌊√(4 (1 + 2e) min(C, N))⌋
    rece_buckets: int | None = None  # LSH buckets n_b
    rece_chunks: int | None = None  # equal chunks n_c of the sorted lists (None: n_b)
    rece_extra_chunks: int = 1  # neighbouring item chunks scored on each side (e)
    rece_rounds: int = 1  # independent hashings with fresh random directions
    rece_alpha: float = 1.0  # candidates' exp weighted by alpha (SCE-style); 1 = the paper


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20  # paper settings use 200-300: see benchmarks/configs
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    adam_beta2: float = 0.999  # Adam's second-moment decay (pmixer's SASRec uses 0.98)
    patience: int = 5  # evaluations without a better valid NDCG@10 before stopping
    eval_every: int = 1
    seed: int = 42
    threads: int | None = None  # torch threads; None = all cores
    diagnostics: bool = False  # log exact valid CE and the Xu et al. bound per epoch


@dataclass(frozen=True)
class EvalConfig:
    ks: tuple[int, ...] = (1, 5, 10, 20)
    # the user's own history in the ranking: "mask" removes it (never the target), "keep" leaves
    # it, "zero" scores it 0, the target included (S3-Rec's code); see seqrec.evaluate
    history: str = "mask"
    batch_size: int = 1024  # users per encoded block; results do not depend on it


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    out_dir: str = "runs"
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "loss": LossConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
}


def suggest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """' (did you mean X?)' for the closest choice, or ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def check_choice(where: str, value: str, choices: tuple[str, ...] | list[str]) -> None:
    """Raise ConfigError "WHERE must be one of A, B; got 'x' (did you mean ...)" unless value is
    one of ``choices`` (the config's validation, and the models' own for direct use)."""
    if value not in choices:
        raise ConfigError(
            f"{where} must be one of {', '.join(choices)}; got '{value}'{suggest(value, choices)}"
        )


def _coerce(section: str, key: str, value: Any, annotation: str) -> Any:
    where = f"{section}.{key}"
    if value is None:
        if "None" in annotation:
            return None
        raise ConfigError(f"{where} may not be empty")
    if annotation.startswith("tuple"):
        if isinstance(value, str):
            value = [v for v in value.replace(",", " ").split() if v]
        try:
            return tuple(int(v) for v in value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be a list of integers, got {value!r}") from None
    base = annotation.replace(" | None", "")
    try:
        if base == "bool":
            if isinstance(value, str):
                low = value.lower()
                if low in ("true", "1", "yes", "on"):
                    return True
                if low in ("false", "0", "no", "off"):
                    return False
                raise ValueError
            if isinstance(value, bool):
                return value
            raise ValueError
        if base == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if base == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if base == "str":
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be {base}, got {value!r}") from None
    return value


def _legacy_eval_keys(values: dict[str, Any]) -> dict[str, Any]:
    """``eval.mask_history = true/false`` (run folders written before ``eval.history``) read as
    ``history = "mask"/"keep"``."""
    legacy = {k for k in values if k.replace("-", "_") == "mask_history"}
    if not legacy:
        return values
    if "history" in values:
        raise ConfigError(
            "eval.mask_history and eval.history are both set; keep only eval.history "
            '("mask", "keep" or "zero")'
        )
    out = {k: v for k, v in values.items() if k not in legacy}
    masked = _coerce("eval", "mask_history", values[legacy.pop()], "bool")
    out["history"] = "mask" if masked else "keep"
    return out


def _build_section(name: str, values: dict[str, Any], base: Any) -> Any:
    cls = _SECTIONS[name]
    names = {f.name: f for f in fields(cls)}
    updates = {}
    if name == "eval":
        values = _legacy_eval_keys(values)
    for key, value in values.items():
        k = key.replace("-", "_")
        if k not in names:
            raise ConfigError(f"unknown config key '{name}.{key}'{suggest(k, list(names))}")
        updates[k] = _coerce(name, k, value, str(names[k].type))
    return replace(base, **updates)


def merge(base: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Apply a nested dict (TOML layout: sections data/model/loss/train/eval, plus out_dir, name)."""
    top = {f.name for f in fields(RunConfig)}
    cfg = base
    for key, value in overrides.items():
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"config section [{key}] must be a table of keys")
            cfg = replace(cfg, **{key: _build_section(key, value, getattr(cfg, key))})
        elif key in top:
            cfg = replace(cfg, **{key: None if value is None else str(value)})
        else:
            raise ConfigError(f"unknown config section or key '{key}'{suggest(key, sorted(top))}")
    return cfg


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None


def validate(cfg: RunConfig) -> RunConfig:
    """Check values that types alone do not; raise ConfigError saying how to fix them."""
    from seqrec.losses import LOSSES
    from seqrec.models import MODELS

    d, m, lo, t, e = cfg.data, cfg.model, cfg.loss, cfg.train, cfg.eval

    def positive(where: str, value: float, minimum: float = 1) -> None:
        if value < minimum:
            raise ConfigError(f"{where} must be >= {minimum}, got {value}")

    check_choice("data.format", d.format, FORMATS)
    check_choice("data.split", d.split, SPLITS)
    check_choice("model.name", m.name, sorted(MODELS))
    check_choice("model.block", m.block, BLOCKS)
    check_choice("model.residual", m.residual, RESIDUALS)
    check_choice("model.padding_keys", m.padding_keys, PADDING_KEYS)
    check_choice("model.init", m.init, INITS)
    check_choice("model.gru_variant", m.gru_variant, GRU_VARIANTS)
    if m.block == "bert" and (m.residual, m.padding_keys) != ("query", "masked"):
        raise ConfigError(
            "model.residual and model.padding_keys are variants of the 'sasrec' block; the 'bert' "
            "block has post-LN residuals and hides padding keys: remove them, or use "
            "model.block = 'sasrec'"
        )
    if m.block == "bert" and m.init == "freerec":
        raise ConfigError(
            "model.init = 'freerec' is Xu et al.'s initialisation of the 'sasrec' block; with "
            "model.block = 'bert' use init = 'normal' (S3-Rec's and RecBole's) or 'xavier'"
        )
    if not 0.0 <= t.adam_beta2 < 1.0:
        raise ConfigError(f"train.adam_beta2 must be in [0, 1), got {t.adam_beta2}")
    check_choice("loss.name", lo.name, sorted(LOSSES))
    check_choice("loss.positions", lo.positions, POSITIONS)
    check_choice("loss.pool", lo.pool, POOLS)
    check_choice("loss.ce_impl", lo.ce_impl, CE_IMPLS)
    positive("loss.ce_chunk_size", lo.ce_chunk_size)
    for key in ("rece_buckets", "rece_chunks"):
        if getattr(lo, key) is not None:
            positive(f"loss.{key}", getattr(lo, key))
    positive("loss.rece_extra_chunks", lo.rece_extra_chunks, 0)
    positive("loss.rece_rounds", lo.rece_rounds)
    if not lo.rece_alpha > 0:
        raise ConfigError(
            f"loss.rece_alpha must be > 0 (1 = the paper's RECE), got {lo.rece_alpha}"
        )
    if lo.popularity_power < 0:
        raise ConfigError(f"loss.popularity_power must be >= 0, got {lo.popularity_power}")
    if lo.bpr_max_reg < 0:
        raise ConfigError(f"loss.bpr_max_reg must be >= 0, got {lo.bpr_max_reg}")
    if lo.logq and lo.name == "sampled-softmax" and lo.pool not in LOGQ_POOLS:
        raise ConfigError(
            f"loss.logq needs a proposal known in closed form; pool '{lo.pool}' has none: "
            f"choose loss.pool from {', '.join(LOGQ_POOLS)} or set loss.logq = false"
        )
    if lo.alpha <= 0:
        raise ConfigError(f"loss.alpha must be > 0, got {lo.alpha}")
    if not 0.0 <= lo.gbce_t <= 1.0:
        raise ConfigError(f"loss.gbce_t must be in [0, 1], got {lo.gbce_t}")
    if m.maxlen < 2:
        raise ConfigError(
            f"model.maxlen must be at least 2 (got {m.maxlen}): a sequence model needs a history"
        )
    positive("model.dim", m.dim)
    positive("model.layers", m.layers)
    positive("model.heads", m.heads)
    if m.dim % m.heads:
        raise ConfigError(f"model.dim ({m.dim}) must be divisible by model.heads ({m.heads})")
    if not 0.0 <= m.dropout < 1.0:
        raise ConfigError(f"model.dropout must be in [0, 1), got {m.dropout}")
    positive("loss.negatives", lo.negatives)
    positive("train.epochs", t.epochs)
    positive("train.batch_size", t.batch_size)
    positive("train.patience", t.patience)
    positive("train.eval_every", t.eval_every)
    if t.threads is not None:
        positive("train.threads", t.threads)
    if not t.lr > 0:
        raise ConfigError(f"train.lr must be > 0, got {t.lr}")
    if t.weight_decay < 0:
        raise ConfigError(f"train.weight_decay must be >= 0, got {t.weight_decay}")
    positive("eval.batch_size", e.batch_size)
    check_choice("eval.history", e.history, HISTORY_PROTOCOLS)
    if not e.ks or any(k < 1 for k in e.ks):
        raise ConfigError(f"eval.ks must be positive integers, got {list(e.ks)}")
    if "ndcg@10" not in {f"ndcg@{k}" for k in e.ks}:
        raise ConfigError("eval.ks must include 10: validation NDCG@10 picks the best epoch")
    positive("data.min_user_interactions", d.min_user_interactions, 0)
    positive("data.min_item_interactions", d.min_item_interactions, 0)
    positive("data.synthetic_users", d.synthetic_users)
    positive("data.synthetic_items", d.synthetic_items, 2)
    if d.split == "temporal" and not 0 < d.valid_quantile < d.test_quantile < 1:
        raise ConfigError(
            "temporal split needs 0 < data.valid_quantile < data.test_quantile < 1, "
            f"got {d.valid_quantile} and {d.test_quantile}"
        )
    return cfg


def to_toml(cfg: RunConfig) -> str:
    """Render the resolved config as TOML (None values are left out: they are the defaults)."""

    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, list | tuple):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        s = str(v).replace("\\", "\\\\").replace('"', '\\"')
        return f'"{s}"'

    raw = cfg.to_dict()
    lines = []
    for key in ("out_dir", "name"):
        if raw[key] is not None:
            lines.append(f"{key} = {fmt(raw[key])}")
    for section in _SECTIONS:
        lines.append(f"\n[{section}]")
        for k, v in raw[section].items():
            if v is not None:
                lines.append(f"{k} = {fmt(v)}")
    return "\n".join(lines) + "\n"
