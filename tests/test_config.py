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
        ({"eval": {"history": "masked"}}, "eval.history must be one of mask, keep, zero"),
        ({"model": {"block": "BERT"}}, "model.block must be one of sasrec, bert"),
        ({"model": {"block": "bert", "residual": "input"}}, "variants of the 'sasrec' block"),
        ({"model": {"block": "bert", "padding_keys": "attend"}}, "remove them"),
        ({"model": {"block": "bert", "init": "freerec"}}, "use init = 'normal'"),
        ({"model": {"gru_variant": "RecBole"}}, "model.gru_variant must be one of plain, recbole"),
    ],
)
def test_validation_messages(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(merge(RunConfig(), overrides))


@pytest.mark.parametrize(("legacy", "protocol"), [(True, "mask"), (False, "keep")])
def test_legacy_mask_history_key_reads_as_history(legacy, protocol):
    # run folders written before eval.history carry eval.mask_history: they load unchanged
    cfg = validate(merge(RunConfig(), {"eval": {"mask_history": legacy}}))
    assert cfg.eval.history == protocol
    assert validate(merge(RunConfig(), {"eval": {"mask-history": str(legacy)}})) == cfg


def test_legacy_and_new_history_keys_together_are_refused():
    with pytest.raises(ConfigError, match=r"keep only eval\.history"):
        merge(RunConfig(), {"eval": {"mask_history": False, "history": "zero"}})


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


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"loss": {"rece_rounds": 0}}, "rece_rounds must be >= 1"),
        ({"loss": {"rece_buckets": 0}}, "rece_buckets must be >= 1"),
        ({"loss": {"rece_extra_chunks": -1}}, "rece_extra_chunks must be >= 0"),
        ({"loss": {"rece_alpha": 0.0}}, "rece_alpha must be > 0"),
        ({"loss": {"pool": "inbatch"}}, "did you mean 'in-batch'"),
        ({"loss": {"gbce_t": 2}}, r"gbce_t must be in \[0, 1\]"),
        ({"loss": {"alpha": 0}}, "alpha must be > 0"),
        ({"loss": {"bpr_max_reg": -1}}, "bpr_max_reg must be >= 0"),
        (
            {"loss": {"name": "sampled-softmax", "logq": True, "pool": "in-batch"}},
            "choose loss.pool from all, not-target, popularity, shared",
        ),
    ],
)
def test_loss_option_validation(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(merge(RunConfig(), overrides))


def test_every_loss_option_is_a_config_key():
    cfg = validate(
        merge(
            RunConfig(),
            {
                "loss": {
                    "name": "rece",
                    "pool": "in-batch",
                    "rece_buckets": "12",
                    "rece_chunks": 6,
                    "rece_extra_chunks": 0,
                    "rece_rounds": 3,
                    "nce_c": 2,
                    "logq": "true",
                },
                "train": {"diagnostics": "true"},
            },
        )
    )
    lo = cfg.loss
    assert (lo.rece_buckets, lo.rece_chunks, lo.rece_extra_chunks, lo.rece_rounds) == (12, 6, 0, 3)
    assert lo.pool == "in-batch" and lo.nce_c == 2.0 and lo.logq is True
    assert cfg.train.diagnostics is True
