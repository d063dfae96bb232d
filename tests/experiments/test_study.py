"""Study files: parsing, validation with helpful errors, grid expansion and run names."""

from __future__ import annotations

from pathlib import Path

import pytest

from seqrec.errors import ConfigError
from seqrec.experiments.study import clean_label, load_study

REPO = Path(__file__).resolve().parents[2]

BASE = """
name = "t"
out_dir = "OUT"
seeds = [1, 2]
[base]
model = { name = "sasrec", dim = 8, layers = 1, maxlen = 10 }
data = { dataset = "synthetic", synthetic_users = 200, synthetic_items = 50 }
train = { epochs = 1 }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(text.replace("OUT", str(tmp_path / "runs")), encoding="utf-8")
    return path


def test_quickstart_study_expands_to_eight_valid_runs():
    study = load_study(REPO / "benchmarks" / "studies" / "quickstart.toml")
    planned = study.runs()
    assert len(planned) == 8 and study.baseline == "bce" and study.seeds == (1, 2)
    names = [r.name for r in planned]
    assert len(set(names)) == 8
    assert names[0] == "ml-100k-sasrec-ce-all-seed1"
    assert [r.seed for r in planned] == [1] * 4 + [2] * 4  # seed outermost
    assert {r.dataset for r in planned} == {"ml-100k", "synthetic"}
    assert {r.method for r in planned} == {"sasrec-ce-all", "sasrec-bce-all"}
    for r in planned:
        cfg = r.config
        assert cfg.name == r.name and cfg.train.seed == r.seed and cfg.model.dim == 32
        assert cfg.loss.name == r.loss and cfg.out_dir == "runs/quickstart"
    synthetic = [r for r in planned if r.dataset == "synthetic"]
    assert all(r.config.data.synthetic_users == 1000 for r in synthetic)
    assert names == [r.name for r in study.runs()]  # deterministic


def test_dotted_axes_quoted_or_not_and_hyperparameters_in_names(tmp_path):
    path = write(
        tmp_path,
        BASE + '[grid]\nloss.name = ["ce", "bce"]\n"train.lr" = [0.001, 3e-3]\n',
    )
    planned = load_study(path).runs()
    assert len(planned) == 2 * 2 * 2
    assert planned[0].name == "synthetic-sasrec-ce-all-lr0.001-seed1"
    assert planned[1].name == "synthetic-sasrec-ce-all-lr0.003-seed1"
    assert planned[1].config.train.lr == pytest.approx(0.003)
    assert planned[1].factors == {"loss.name": "ce", "train.lr": "lr0.003"}


def test_tables_without_labels_are_named_by_what_varies(tmp_path):
    text = (
        BASE
        + "[grid]\ndata = [\n"
        + '  { dataset = "synthetic", synthetic_users = 200 },\n'
        + '  { dataset = "synthetic", synthetic_users = 300 },\n]\n'
    )
    planned = load_study(write(tmp_path, text)).runs()
    assert [r.dataset for r in planned[:2]] == [
        "synthetic-synthetic_users200",
        "synthetic-synthetic_users300",
    ]


def test_data_hyperparameter_axis_goes_into_the_dataset_label(tmp_path):
    text = BASE + '[grid]\n"data.synthetic_items" = [50, 60]\n'
    planned = load_study(write(tmp_path, text)).runs()
    assert planned[0].dataset == "synthetic-synthetic_items50"
    assert planned[0].method == "sasrec-ce-all"


@pytest.mark.parametrize(
    ("grid", "expected"),
    [
        ('"loss.nmae" = ["ce"]', "did you mean 'name'"),
        ('"los.name" = ["ce"]', "did you mean 'loss'"),
        ('"loss.name" = ["cee", "bce"]', "loss.name must be one of"),
        ('"loss.name" = "ce"', "must be a non-empty list"),
        ('"train.seed" = [1, 2]', "seeds = [...]"),
        ('"train.lr" = ["fast"]', "train.lr must be float"),
        ('"loss.name" = ["ce", "ce"]', "repeated value"),
        (
            'data = [{ label = "a", synthetic_users = 200 }, { label = "a", synthetic_users = 300 }]',
            "distinct `label",
        ),
    ],
)
def test_bad_grids_raise_config_errors_naming_the_file(tmp_path, grid, expected):
    path = write(tmp_path, BASE + "[grid]\n" + grid + "\n")
    with pytest.raises(ConfigError) as info:
        load_study(path)
    assert expected in str(info.value)
    assert str(path) in str(info.value)


def test_error_names_the_line_of_the_bad_key(tmp_path):
    path = write(tmp_path, BASE + '[grid]\n"loss.nmae" = ["ce"]\n')
    line = path.read_text().splitlines().index('"loss.nmae" = ["ce"]') + 1
    with pytest.raises(ConfigError, match=f"study.toml:{line}: "):
        load_study(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("seeds = []\n", "seeds must be a non-empty list"),
        ("seeds = [1, 1]\n", "repeats"),
        ('basline = "bce"\n', "did you mean 'baseline'"),
        ('baseline = "bcee"\n[grid]\n"loss.name" = ["ce", "bce"]\n', "did you mean 'bce'"),
        ("[base]\ntrain = { seed = 3 }\n", "seeds = [...]"),
        ("[base]\nmodel = { dimm = 3 }\n", "did you mean 'dim'"),
    ],
)
def test_bad_top_level_and_base(tmp_path, text, expected):
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=None) as info:
        load_study(path)
    assert expected in str(info.value)


def test_no_grid_is_one_configuration_per_seed(tmp_path):
    planned = load_study(write(tmp_path, BASE)).runs()
    assert [r.name for r in planned] == [
        "synthetic-sasrec-ce-all-seed1",
        "synthetic-sasrec-ce-all-seed2",
    ]


def test_clean_label():
    assert clean_label("my data/set v2") == "my_data_set_v2"
    assert clean_label("lr1e-05") == "lr1e-05"


OVERRIDES = """[grid]
"data.synthetic_items" = [50, 60]
"train.lr" = [0.001, 0.003]
[[override]]
match = { "data.synthetic_items" = 60 }
train = { epochs = 3 }
model = { dim = 16 }
[[override]]
match = { "data.synthetic_items" = 60, "train.lr" = ["lr0.003"] }
train = { epochs = 5 }
"""


def test_overrides_apply_to_matching_combinations_in_file_order(tmp_path):
    planned = {r.name: r.config for r in load_study(write(tmp_path, BASE + OVERRIDES)).runs()}
    assert len(planned) == 2 * 2 * 2  # overrides never add runs
    small = planned["synthetic-synthetic_items50-sasrec-ce-all-lr0.001-seed1"]
    assert small.train.epochs == 1 and small.model.dim == 8  # [base]
    a = planned["synthetic-synthetic_items60-sasrec-ce-all-lr0.001-seed1"]
    assert a.train.epochs == 3 and a.model.dim == 16 and a.model.layers == 1  # merged, not replaced
    b = planned["synthetic-synthetic_items60-sasrec-ce-all-lr0.003-seed2"]
    assert b.train.epochs == 5 and b.model.dim == 16 and b.train.lr == pytest.approx(0.003)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ('match = { "train.lrr" = 0.001 }\ntrain = { epochs = 2 }', "did you mean 'train.lr'"),
        ('match = { "train.lr" = 0.5 }\ntrain = { epochs = 2 }', "has no value 0.5"),
        ("train = { epochs = 2 }", "needs a non-empty `match`"),
        ('match = { "train.lr" = 0.001 }', "sets nothing"),
        ('match = { "train.lr" = 0.001 }\ntrain = { epoch = 2 }', "did you mean 'epochs'"),
        ('match = { "train.lr" = 0.001 }\ntrain = { seed = 2 }', "seeds = [...]"),
        ('match = { "train.lr" = 0.001 }\ntrain = { epochs = "x" }', "train.epochs must be int"),
    ],
)
def test_bad_overrides_say_what_to_fix(tmp_path, override, expected):
    grid = '[grid]\n"train.lr" = [0.001, 0.003]\n[[override]]\n' + override + "\n"
    with pytest.raises(ConfigError) as info:
        load_study(write(tmp_path, BASE + grid))
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('reference = "xu2023"\n', "did you mean 'xu2024'"),
        ("per_position = -1\n", "per_position must be"),
        ('[override]\nmatch = { data = "a" }\n', "[[override]] (double brackets)"),
    ],
)
def test_bad_reference_per_position_and_override_table(tmp_path, text, expected):
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_study(path)
    assert expected in str(info.value)


def test_li2023_study_is_table_2_of_the_paper():
    study = load_study(REPO / "benchmarks" / "studies" / "li2023.toml")
    planned = study.runs()
    assert study.reference == "li2023" and study.baseline == "bce" and study.per_position == 50
    assert len(planned) == 3 * 2 * 3 * len(study.seeds)
    assert {r.config.data.dataset for r in planned} == {"beauty", "yelp", "lastfm"}
    trained = {(r.model, r.config.loss.name, r.config.loss.positions) for r in planned}
    assert trained == {
        (m, lo, p)
        for m in ("gru4rec", "sasrec")
        for lo, p in (("bce", "all"), ("ce", "last"), ("ce", "all"))
    }
    for r in planned:
        c = r.config
        assert (c.model.dim, c.model.maxlen, c.train.lr, c.train.patience) == (64, 50, 1e-3, 10)
        assert c.train.epochs == 150
        # S3-Rec's evaluation code on the one dataset with repeat targets; the others: no effect
        assert c.eval.history == ("zero" if c.data.dataset == "yelp" else "mask")


def test_xu2024_study_runs_the_reference_configs():
    """The study's CE and BCE runs are exactly benchmarks/configs/*.toml but for the seed and
    the patience: the study trains to the end as the authors did (patience 60 evaluations of
    300 epochs, CE 40 of 200); the configs keep the patience their committed results used."""
    from seqrec.config import RunConfig, load_toml, merge
    from seqrec.experiments.sweep import config_diff

    study = load_study(REPO / "benchmarks" / "studies" / "xu2024.toml")
    planned = {r.name: r for r in study.runs()}
    assert len(planned) == 3 * 5 * 5 and study.reference == "xu2024"
    for name in ("beauty-sasrec-ce", "beauty-sasrec-bce", "beauty-sasrec-sce", "ml-1m-sasrec-ce"):
        ref = merge(RunConfig(), load_toml(REPO / "benchmarks" / "configs" / f"{name}.toml"))
        cfg = planned[f"{name}-all-seed1"].config
        to_the_end = cfg.train.epochs // cfg.train.eval_every
        assert config_diff(cfg, ref) == [
            f"train.patience: {to_the_end} != {ref.train.patience}",
            "train.seed: 1 != 42",
        ]
    sce = planned["beauty-sasrec-sce-all-seed3"].config
    assert (sce.loss.negatives, sce.loss.alpha, sce.train.epochs) == (500, 100.0, 300)
    nce = planned["yelp-sasrec-nce-all-seed2"].config
    assert (nce.loss.negatives, nce.loss.nce_c, nce.model.dropout) == (100, 10.0, 0.7)


def test_xu2024_study_uses_the_authors_logged_settings():
    """Every cell of the study trains with the settings the authors' own runs logged (their
    published FreeRec logs): BCE and BPR were tuned apart from CE, and a study that gave them
    CE's settings came out 16% low on Beauty BPR."""
    from seqrec.experiments.papers import paper_rows, settings_diff

    rows = paper_rows("xu2024")
    runs = load_study(REPO / "benchmarks" / "studies" / "xu2024.toml").runs()
    assert {(r.config.data.dataset, r.config.loss.name) for r in runs} == {
        (k[0], k[2]) for k, row in rows.items() if row.settings
    }
    for r in runs:
        row = rows[(r.config.data.dataset, "sasrec", r.config.loss.name, "all")]
        assert settings_diff(row, r.config) == [], r.name


def test_settings_diff_compares_what_the_loss_reads():
    from dataclasses import replace

    from seqrec.experiments.papers import paper_rows, settings_diff

    run = {r.name: r for r in load_study(REPO / "benchmarks" / "studies" / "xu2024.toml").runs()}
    bpr = run["beauty-sasrec-bpr-all-seed42"].config
    row = paper_rows("xu2024")[("beauty", "sasrec", "bpr", "all")]
    off = replace(bpr, model=replace(bpr.model, dropout=0.6), loss=replace(bpr.loss, pool="all"))
    assert settings_diff(row, off) == [
        "model.dropout 0.6 (theirs 0.3)",
        "loss.pool all (theirs not-history)",
    ]
    ce = run["beauty-sasrec-ce-all-seed42"].config  # CE samples nothing: K and pool not compared
    ce_row = paper_rows("xu2024")[("beauty", "sasrec", "ce", "all")]
    assert settings_diff(ce_row, replace(ce, loss=replace(ce.loss, negatives=7))) == []
    nce = run["yelp-sasrec-nce-all-seed42"].config
    nce_row = paper_rows("xu2024")[("yelp", "sasrec", "nce", "all")]
    assert settings_diff(nce_row, replace(nce, loss=replace(nce.loss, nce_c=0.0))) == [
        "loss.nce_c 0.0 (theirs 10.0)"
    ]
