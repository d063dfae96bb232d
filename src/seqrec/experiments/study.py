"""Study files: a grid of runs (datasets x models x losses x hyperparameters x seeds) in TOML.

Format (every key but ``[grid]`` is optional)::

    name = "quickstart"            # shown in the report (default: the file name)
    out_dir = "runs/quickstart"    # where run folders go, relative to the working directory
                                   # (default: runs/<name>)
    baseline = "bce"               # loss name or method label the others are compared against
    seeds = [1, 2]                 # train.seed of every configuration (default: [42])
    reference = "xu2024"           # published numbers the report puts beside ours
                                   # (seqrec.experiments.papers: li2023, xu2024; default none)
    per_position = 50              # after each run, metrics at the last 50 positions of every
                                   # sequence (seqrec.experiments.positions); 0 = off

    [base]                         # RunConfig sections applied to every run
    model = { name = "sasrec", dim = 32, layers = 1 }
    train = { epochs = 5 }

    [grid]                         # every list is an axis; the cross product is run
    "loss.name" = ["ce", "bce"]    # a "section.key" axis: a list of values
    "train.lr" = [1e-3, 3e-3]      # (unquoted dotted keys, loss.name = [...], work too)
    data = [                       # a "section" axis: a list of tables merged into that section;
      { label = "small", dataset = "synthetic", synthetic_users = 500 },   # `label` names it
      { label = "large", dataset = "synthetic", synthetic_users = 900 },
    ]

    [[override]]                   # settings for some grid combinations only, applied after
    match = { data = "large", "loss.name" = ["bce"] }   # [base] and [grid], in file order;
    loss = { negatives = 20 }      # match: grid axis -> label(s) or value(s), all must match
    train = { epochs = 30 }

Keys inside ``[base]``, ``[grid]`` and ``[[override]]`` are checked exactly like a run config
(same sections, same "did you mean" hints); ``train.seed``, ``name`` and ``out_dir`` are set by
the sweep and may not appear there. Runs are ordered seed first, then the grid axes in file
order (the last axis varies fastest), so a partial sweep already holds every configuration of
the first seed. Overrides never add or remove runs, and do not enter run names.

Every run gets a deterministic folder name ``{dataset}-{model}-{loss}-{positions}[-{hp}...]-seed{n}``
where each part is the label of the grid axis that sets it (``lr0.003`` for a ``train.lr`` axis, the
``label`` of a table, or the value itself), so a rerun finds the same folders.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from seqrec.config import _SECTIONS, RunConfig, load_toml, merge, suggest, validate
from seqrec.errors import ConfigError

TOP_KEYS = (
    "name",
    "description",
    "out_dir",
    "baseline",
    "seeds",
    "reference",
    "per_position",
    "base",
    "grid",
    "override",
)
DEFAULT_PER_POSITION = 50
RESERVED = {"train.seed": "list the seeds in `seeds = [...]` instead", "name": "", "out_dir": ""}
PRIMARY = {"data": "dataset", "model": "name", "loss": "name"}  # the key a section's label names


@dataclass(frozen=True)
class Axis:
    """One grid axis: ``path`` is ``"section.key"`` (values) or ``"section"`` (tables).

    overrides: one nested config dict per value (``{"loss": {"name": "ce"}}``);
    labels: one short name per value, used in run names and reports.
    """

    path: str
    overrides: tuple[Mapping[str, Any], ...]
    labels: tuple[str, ...]
    values: tuple[Any, ...] = ()  # the raw values of a "section.key" axis (empty for tables)

    def index_of(self, wanted: Any) -> int | None:
        """Index of the value whose label (or raw value) is ``wanted``, else None."""
        for i, label in enumerate(self.labels):
            if wanted == label or (isinstance(wanted, str) and clean_label(wanted) == label):
                return i
        for i, value in enumerate(self.values):
            if not isinstance(value, bool) and not isinstance(wanted, bool) and wanted == value:
                return i
        return None

    @property
    def section(self) -> str:
        return self.path.split(".", 1)[0]

    @property
    def key(self) -> str | None:
        parts = self.path.split(".", 1)
        return parts[1] if len(parts) == 2 else None

    @property
    def names_primary(self) -> bool:
        """True if this axis sets the section's primary name (dataset, model or loss name)."""
        if self.section not in PRIMARY:
            return False
        return self.key is None or self.key == PRIMARY[self.section]


@dataclass(frozen=True)
class Override:
    """An ``[[override]]`` table: ``settings`` (nested config sections) apply to every run whose
    grid combination has, for each axis path in ``match``, one of the value indices listed."""

    match: Mapping[str, frozenset[int]]
    settings: Mapping[str, Any]

    def applies(self, combo: Mapping[str, int]) -> bool:
        return all(combo[path] in allowed for path, allowed in self.match.items())


@dataclass(frozen=True)
class PlannedRun:
    """One run of a study: its folder name, labels and the resolved, validated config."""

    name: str
    dataset: str  # dataset label (shared by every run on that data)
    method: str  # model-loss-positions[-hp...]: what is compared across seeds
    model: str
    loss: str
    positions: str
    seed: int
    factors: Mapping[str, str]  # grid axis path -> label
    config: RunConfig

    def manifest(self) -> dict[str, Any]:
        """JSON-able description (without the config, which lives in the run folder)."""
        return {
            "name": self.name,
            "dataset": self.dataset,
            "method": self.method,
            "model": self.model,
            "loss": self.loss,
            "positions": self.positions,
            "seed": self.seed,
            "factors": dict(self.factors),
        }


@dataclass(frozen=True)
class Study:
    name: str
    out_dir: Path
    baseline: str | None
    seeds: tuple[int, ...]
    base: Mapping[str, Any]  # nested overrides of [base]
    axes: tuple[Axis, ...]
    path: Path | None = None
    overrides: tuple[Override, ...] = ()
    reference: str | None = None  # paper whose numbers the report shows (see .papers)
    per_position: int = DEFAULT_PER_POSITION  # offsets evaluated after each run; 0 = off

    def runs(self) -> list[PlannedRun]:
        """Expand the grid: seeds (outermost) x axes in file order; every config validated."""
        return expand(self)


def _where(path: Path | None, text: str | None, needle: str) -> str:
    """'file:line: ' for the first line mentioning ``needle`` (or 'file: ' if not found)."""
    if path is None:
        return ""
    if text:
        pattern = re.compile(r'(^|[\s."\[])' + re.escape(needle) + r'($|[\s."\]=])')
        for i, line in enumerate(text.splitlines(), 1):
            if pattern.search(line.split("#", 1)[0]):
                return f"{path}:{i}: "
    return f"{path}: "


def _fmt_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "+".join(_fmt_value(v) for v in value)
    return str(value)


def clean_label(text: str) -> str:
    """A label safe in a folder name: letters, digits and ``._+=@-``; anything else -> ``_``."""
    out = re.sub(r"[^A-Za-z0-9._+=@-]+", "_", text).strip("_")
    return out or "_"


def _dataset_stem(dataset: str) -> str:
    return Path(dataset).stem if ("/" in dataset or "\\" in dataset) else dataset


def _primary_label(section: str, value: Any) -> str:
    return _dataset_stem(str(value)) if section == "data" else str(value)


def _table_labels(section: str, tables: list[dict[str, Any]]) -> list[str]:
    """Explicit ``label`` keys, else the primary value plus every key that varies across tables."""
    primary = PRIMARY.get(section)
    keys: list[str] = []
    for t in tables:
        keys += [k for k in t if k not in keys and k not in ("label", primary)]
    varying = [k for k in keys if len({repr(t.get(k)) for t in tables}) > 1]
    labels = []
    for t in tables:
        if "label" in t:
            labels.append(str(t["label"]))
            continue
        parts = [_primary_label(section, t[primary])] if primary and primary in t else []
        parts += [f"{k}{_fmt_value(t[k])}" for k in varying if k in t]
        labels.append("-".join(parts) or section)
    return [clean_label(lab) for lab in labels]


def _flatten_grid(grid: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested TOML tables (from unquoted dotted keys) -> ("section.key", value) pairs in order."""
    out: list[tuple[str, Any]] = []
    for key, value in grid.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out += _flatten_grid(value, prefix=path + ".")
        else:
            out.append((path, value))
    return out


def _check_keys(
    section: str, keys: Sequence[str], where: str, context: str, allow_label: bool = False
) -> None:
    names = [f.name for f in fields(_SECTIONS[section])]
    for key in keys:
        k = key.replace("-", "_")
        if allow_label and k == "label":
            continue
        if f"{section}.{k}" in RESERVED:
            raise ConfigError(
                f"{where}{context}: '{section}.{key}' is set by the sweep; "
                f"{RESERVED[section + '.' + k]}"
            )
        if k not in names:
            raise ConfigError(
                f"{where}{context}: unknown config key '{section}.{key}'{suggest(k, names)}"
            )


def _parse_axis(path: str, values: Any, file: Path | None, text: str | None) -> Axis:
    where = _where(file, text, path.split(".")[-1])
    if not isinstance(values, list) or not values:
        raise ConfigError(
            f"{where}[grid] '{path}' must be a non-empty list of values, got {values!r}; "
            f'e.g. "loss.name" = ["ce", "bce"]'
        )
    parts = path.split(".")
    section = parts[0]
    if section not in _SECTIONS:
        raise ConfigError(
            f"{where}[grid] '{path}': unknown config section '{section}'"
            f"{suggest(section, list(_SECTIONS))}; sections: {', '.join(_SECTIONS)}"
        )
    if len(parts) > 2:
        raise ConfigError(f"{where}[grid] '{path}': use 'section.key', e.g. 'loss.name'")
    if len(parts) == 1:  # a list of tables
        if not all(isinstance(v, dict) and v for v in values):
            raise ConfigError(
                f"{where}[grid] '{path}' must be a list of non-empty tables, e.g. "
                f'{section} = [{{ label = "a", ... }}, {{ label = "b", ... }}]; '
                f"or use '{section}.KEY' for a list of values"
            )
        for table in values:
            _check_keys(section, list(table), where, f"[grid] {path}", allow_label=True)
        labels = _table_labels(section, values)
        overrides = tuple({section: {k: v for k, v in t.items() if k != "label"}} for t in values)
    else:
        key = parts[1]
        _check_keys(section, [key], where, "[grid]")
        if section in PRIMARY and key.replace("-", "_") == PRIMARY[section]:
            labels = [clean_label(_primary_label(section, v)) for v in values]
        else:
            labels = [clean_label(f"{key}{_fmt_value(v)}") for v in values]
        overrides = tuple({section: {key: v}} for v in values)
    if len(set(labels)) != len(labels):
        dup = next(lab for lab in labels if labels.count(lab) > 1)
        raise ConfigError(
            f"{where}[grid] '{path}': two values get the same label '{dup}'; "
            'give every table a distinct `label = "..."`'
            if len(parts) == 1
            else f"{where}[grid] '{path}': repeated value '{dup}'"
        )
    raw_values = tuple(values) if len(parts) == 2 else ()
    return Axis(path=path, overrides=overrides, labels=tuple(labels), values=raw_values)


def _check_sections(
    table: Mapping[str, Any], where: str, context: str, skip: tuple[str, ...] = ()
) -> None:
    """Every key of ``table`` (but ``skip``) is a config section holding a table of valid keys."""
    for section, values in table.items():
        if section in skip:
            continue
        if section in ("name", "out_dir"):
            raise ConfigError(f"{where}{context} may not set '{section}': the sweep names the runs")
        if section not in _SECTIONS:
            raise ConfigError(
                f"{where}{context}: unknown config section '{section}'"
                f"{suggest(section, list(_SECTIONS))}; sections: {', '.join(_SECTIONS)}"
            )
        if not isinstance(values, dict):
            raise ConfigError(f"{where}{context} {section} must be a table of keys")
        _check_keys(section, list(values), where, context)


def _parse_override(
    i: int, raw: Any, axes: Sequence[Axis], file: Path | None, text: str | None
) -> Override:
    """Validate the ``i``-th ``[[override]]`` table against the grid axes."""
    where = _where(file, text, "override")
    context = f"[[override]] #{i + 1}"
    example = 'e.g. match = { data = "beauty", "loss.name" = ["sce", "nce"] }'
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}{context} must be a table (write [[override]])")
    match = raw.get("match")
    if not isinstance(match, dict) or not match:
        raise ConfigError(f"{where}{context} needs a non-empty `match` table; {example}")
    by_path = {a.path: a for a in axes}
    allowed: dict[str, frozenset[int]] = {}
    for path, wanted in _flatten_grid(match):
        axis = by_path.get(path)
        if axis is None:
            raise ConfigError(
                f"{where}{context}: match key '{path}' is not a grid axis"
                f"{suggest(path, list(by_path))}; axes: {', '.join(by_path) or 'none'}"
            )
        want = wanted if isinstance(wanted, list) else [wanted]
        idx = []
        for w in want:
            j = axis.index_of(w)
            if j is None:
                raise ConfigError(
                    f"{where}{context}: '{path}' has no value {w!r}"
                    f"{suggest(str(w), list(axis.labels))}; values: {', '.join(axis.labels)}"
                )
            idx.append(j)
        allowed[path] = frozenset(idx)
    if len(raw) == 1:
        raise ConfigError(
            f"{where}{context} sets nothing: add config sections next to match, "
            "e.g. train = { epochs = 300 }"
        )
    _check_sections(raw, where, context, skip=("match",))
    settings = {k: dict(v) for k, v in raw.items() if k != "match"}
    return Override(match=allowed, settings=settings)


def parse_study(
    raw: Mapping[str, Any], *, path: Path | None = None, text: str | None = None
) -> Study:
    """Validate a parsed study table (see the module docstring) into a :class:`Study`."""
    at = f"{path}: " if path is not None else ""
    for key in raw:
        if key not in TOP_KEYS:
            raise ConfigError(
                f"{_where(path, text, key)}unknown study key '{key}'{suggest(key, TOP_KEYS)}; "
                f"study keys: {', '.join(TOP_KEYS)}"
            )
    name = str(raw.get("name") or (path.stem if path is not None else "study"))
    seeds_raw = raw.get("seeds", [42])
    if (
        not isinstance(seeds_raw, list)
        or not seeds_raw
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds_raw)
    ):
        raise ConfigError(
            f"{_where(path, text, 'seeds')}seeds must be a non-empty list of integers, "
            f"e.g. seeds = [1, 2, 3]; got {seeds_raw!r}"
        )
    if len(set(seeds_raw)) != len(seeds_raw):
        raise ConfigError(f"{_where(path, text, 'seeds')}seeds has repeats: {seeds_raw}")
    baseline = raw.get("baseline")
    if baseline is not None and not isinstance(baseline, str):
        raise ConfigError(
            f"{_where(path, text, 'baseline')}baseline must be a loss name or method label "
            f'(a string, e.g. baseline = "bce"), got {baseline!r}'
        )

    reference = raw.get("reference")
    if reference is not None:
        from seqrec.experiments.papers import PAPERS

        if reference not in PAPERS:
            raise ConfigError(
                f"{_where(path, text, 'reference')}reference must name published results, one "
                f"of {', '.join(PAPERS)}; got {reference!r}{suggest(str(reference), list(PAPERS))}"
            )
    per_position = raw.get("per_position", DEFAULT_PER_POSITION)
    if isinstance(per_position, bool) or not isinstance(per_position, int) or per_position < 0:
        raise ConfigError(
            f"{_where(path, text, 'per_position')}per_position must be the number of positions "
            f"to evaluate from the end of each sequence (0 = off), got {per_position!r}"
        )

    base = raw.get("base", {})
    if not isinstance(base, dict):
        raise ConfigError(f"{at}[base] must be a table of config sections")
    for section, values in base.items():
        _check_sections({section: values}, _where(path, text, section), "[base]")

    grid = raw.get("grid", {})
    if not isinstance(grid, dict):
        raise ConfigError(f"{at}[grid] must be a table of lists")
    axes = tuple(_parse_axis(p, v, path, text) for p, v in _flatten_grid(grid))
    paths = [a.path for a in axes]
    for a in axes:
        if a.key is not None and a.section in paths:
            raise ConfigError(
                f"{at}[grid] has both '{a.section}' (tables) and '{a.path}'; put '{a.key}' "
                f"inside the {a.section} tables instead"
            )

    raw_overrides = raw.get("override", [])
    if not isinstance(raw_overrides, list):
        raise ConfigError(
            f"{_where(path, text, 'override')}override must be a list of tables: write "
            "[[override]] (double brackets) before each one"
        )
    overrides = tuple(_parse_override(i, o, axes, path, text) for i, o in enumerate(raw_overrides))

    out_dir = Path(str(raw.get("out_dir") or Path("runs") / clean_label(name)))
    study = Study(
        name=name,
        out_dir=out_dir,
        baseline=baseline,
        seeds=tuple(seeds_raw),
        base=base,
        axes=axes,
        path=path,
        overrides=overrides,
        reference=reference,
        per_position=per_position,
    )
    planned = study.runs()  # validates every config now: a typo fails before any run starts
    if baseline is not None and not any(baseline in (r.loss, r.method) for r in planned):
        losses = sorted({r.loss for r in planned})
        raise ConfigError(
            f"{_where(path, text, 'baseline')}baseline '{baseline}' matches no loss or method of "
            f"the study{suggest(baseline, losses)}; losses: {', '.join(losses)}"
        )
    return study


def load_study(path: str | Path) -> Study:
    """Read and validate a study TOML file (errors name the file and, when found, the line)."""
    path = Path(path)
    raw = load_toml(path)
    return parse_study(raw, path=path, text=path.read_text(encoding="utf-8"))


def _deep_merge(a: dict[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in a.items()}
    for k, v in b.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k].update(v)
        else:
            out[k] = dict(v) if isinstance(v, Mapping) else v
    return out


def expand(study: Study) -> list[PlannedRun]:
    """All runs of ``study`` in a fixed order, with names, labels and validated configs."""
    at = f"{study.path}: " if study.path is not None else ""
    planned: list[PlannedRun] = []
    for seed in study.seeds:
        for combo in itertools.product(*(range(len(a.labels)) for a in study.axes)):
            overrides = dict(study.base)
            for axis, i in zip(study.axes, combo, strict=True):
                overrides = _deep_merge(overrides, axis.overrides[i])
            at_combo = {a.path: i for a, i in zip(study.axes, combo, strict=True)}
            for extra in study.overrides:
                if extra.applies(at_combo):
                    overrides = _deep_merge(overrides, extra.settings)
            factors = {a.path: a.labels[i] for a, i in zip(study.axes, combo, strict=True)}
            try:
                cfg = merge(RunConfig(), overrides)
                cfg = replace(cfg, train=replace(cfg.train, seed=seed))
                cfg = validate(replace(cfg, out_dir=str(study.out_dir)))
            except ConfigError as exc:
                combo_txt = ", ".join(f"{k}={v}" for k, v in factors.items()) or "the base config"
                raise ConfigError(f"{at}run with {combo_txt}: {exc}") from None
            planned.append(_plan_one(study, cfg, seed, factors))
    names = [r.name for r in planned]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ConfigError(
            f"{at}two runs get the same name '{dup}'; give the grid tables distinct labels"
        )
    return planned


def _plan_one(study: Study, cfg: RunConfig, seed: int, factors: dict[str, str]) -> PlannedRun:
    by_axis = {a.path: a for a in study.axes}

    def primary(section: str, default: str) -> str:
        for p, lab in factors.items():
            if by_axis[p].section == section and by_axis[p].names_primary:
                return lab
        return clean_label(default)

    dataset = primary("data", _dataset_stem(cfg.data.dataset))
    model = primary("model", cfg.model.name)
    loss = primary("loss", cfg.loss.name)
    data_extra = [
        lab
        for p, lab in factors.items()
        if by_axis[p].section == "data" and not by_axis[p].names_primary
    ]
    other = [
        lab
        for p, lab in factors.items()
        if by_axis[p].section != "data" and not by_axis[p].names_primary
    ]
    dataset_label = "-".join([dataset, *data_extra])
    method = "-".join([model, loss, cfg.loss.positions, *other])
    name = f"{dataset_label}-{method}-seed{seed}"
    return PlannedRun(
        name=name,
        dataset=dataset_label,
        method=method,
        model=model,
        loss=loss,
        positions=cfg.loss.positions,
        seed=seed,
        factors=factors,
        config=replace(cfg, name=name),
    )
