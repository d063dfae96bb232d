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
    assert names[0] == "synth-small-sasrec-ce-all-seed1"
    assert [r.seed for r in planned] == [1] * 4 + [2] * 4  # seed outermost
    assert {r.dataset for r in planned} == {"synth-small", "synth-large"}
    assert {r.method for r in planned} == {"sasrec-ce-all", "sasrec-bce-all"}
    for r in planned:
        cfg = r.config
        assert cfg.name == r.name and cfg.train.seed == r.seed and cfg.model.dim == 32
        assert cfg.loss.name == r.loss and cfg.out_dir == "runs/quickstart"
    large = [r for r in planned if r.dataset == "synth-large"]
    assert all(r.config.data.synthetic_users == 900 for r in large)
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
