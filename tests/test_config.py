from __future__ import annotations

import pytest

from seqrec.config import RunConfig, load_toml, merge, to_toml, validate
from seqrec.errors import ConfigError


def test_merge_sections_and_coercion():
    cfg = merge(
        RunConfig(),
        {"model": {"dim": "32", "dropout": 0.5}, "train": {"lr": "1e-3"}, "eval": {"ks": "5,10"}},
    )
    assert cfg.model.dim == 32 and cfg.model.dropout == 0.5 and cfg.train.lr == 1e-3
    assert cfg.eval.ks == (5, 10)


@pytest.mark.parametrize(
    ("overrides", "hint"),
    [
        ({"train": {"lrr": 1}}, "did you mean 'lr'"),
        ({"modle": {}}, "did you mean 'model'"),
        ({"model": {"maxln": 3}}, "did you mean 'maxlen'"),
    ],
)
def test_unknown_key_suggests_closest(overrides, hint):
    with pytest.raises(ConfigError, match=hint):
        merge(RunConfig(), overrides)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model": {"maxlen": 1}}, "maxlen must be at least 2"),
        ({"loss": {"name": "cee"}}, "did you mean 'ce'"),
        ({"loss": {"positions": "al"}}, "all, last"),
        ({"model": {"dim": 30, "heads": 4}}, "divisible"),
        ({"train": {"lr": 0}}, "lr must be > 0"),
        ({"model": {"dropout": 1.0}}, "dropout"),
    ],
)
def test_validation_messages(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(merge(RunConfig(), overrides))


def test_bad_type_is_clear():
    with pytest.raises(ConfigError, match=r"train.epochs must be int"):
        merge(RunConfig(), {"train": {"epochs": "many"}})


def test_toml_round_trip(tmp_path):
    cfg = validate(
        merge(
            RunConfig(),
            {"model": {"dim": 16}, "loss": {"name": "bce", "negatives": 3}, "name": "x"},
        )
    )
    path = tmp_path / "c.toml"
    path.write_text(to_toml(cfg))
    again = validate(merge(RunConfig(), load_toml(path)))
    assert again == cfg


def test_bad_toml_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[model\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_toml(tmp_path / "missing.toml")
