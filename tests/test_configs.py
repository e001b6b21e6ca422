"""ModelConfig, TrainConfig and DistillConfig refuse every bad value on construction, with one
line naming the class, the key and the value; checks that need the model, the dataset or the
machine (block vs n_blocks, target size, device) run when the trainer is built, before any work."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pl = pytest.importorskip("polars")

from seqdistill.data import SplitConfig, prepare  # noqa: E402
from seqdistill.errors import ConfigError, DataError  # noqa: E402
from seqdistill.models import ModelConfig, build_model  # noqa: E402
from seqdistill.training import TrainConfig, Trainer  # noqa: E402
from seqdistill.training.distill import DistillationTerm, DistillConfig, check_block  # noqa: E402

torch.set_num_threads(1)

NAN, INF = float("nan"), float("inf")

MODEL_BAD = [
    ("kind", "gru"),
    ("kind", 3),
    ("n_items", "10"),
    ("n_items", 0),
    ("n_items", 10.0),
    ("hidden", 64.0),
    ("hidden", True),
    ("n_blocks", 0),
    ("n_blocks", True),
    ("n_heads", 0),
    ("max_len", 1),
    ("max_len", "50"),
    ("dropout", 1.0),
    ("dropout", -0.1),
    ("dropout", NAN),
    ("dropout", "0.1"),
    ("dropout", False),
    ("ffn_mult", 0),
    ("mask_prob", 1.5),
    ("mask_prob", INF),
    ("mask_last_prob", -0.5),
    ("loss", "bpr"),
    ("loss", None),
    ("loss_chunk", 0),
    ("n_negatives", -1),
    ("negatives", "hard"),
]
TRAIN_BAD = [
    ("epochs", 0),
    ("epochs", -1),
    ("epochs", "3"),
    ("epochs", 3.0),
    ("epochs", True),
    ("batch_size", 0),
    ("batch_size", 2.5),
    ("lr", 0),
    ("lr", -1e-3),
    ("lr", NAN),
    ("lr", INF),
    ("lr", "1e-3"),
    ("lr", None),
    ("weight_decay", -0.1),
    ("grad_clip", NAN),
    ("grad_clip", -1.0),
    ("stride", 0),
    ("seed", -1),
    ("seed", 1.5),
    ("device", "gpu"),
    ("device", "cuda:x"),
    ("device", 0),
    ("amp", "yes"),
    ("amp", 1),
    ("patience", True),
    ("patience", False),
    ("patience", 0),
    ("patience", 2.5),
    ("min_epochs", -1),
    ("validate", 1),
    ("valid_metric", "auc@10"),
    ("valid_metric", "ndcg@0"),
    ("valid_metric", "ndcg"),
    ("valid_metric", 10),
    ("valid_ks", [0]),
    ("valid_ks", []),
    ("valid_ks", "10"),
    ("valid_ks", [10.0]),
    ("valid_ks", [True]),
    ("valid_filter_seen", "no"),
    ("eval_batch_size", 0),
    ("eval_batch_size", -5),
    ("progress", None),
]
DISTILL_BAD = [
    ("alpha", 1.5),
    ("alpha", -0.1),
    ("alpha", "0.4"),
    ("alpha", NAN),
    ("alpha", True),
    ("gamma", NAN),
    ("gamma", INF),
    ("gamma", "0.1"),
    ("epochs", -1),
    ("epochs", 2.0),
    ("epochs", True),
    ("block", 1.5),
    ("block", True),
    ("block", None),
    ("pooling", "max"),
    ("loss", "l1"),
    ("coverage", "all"),
    ("dynamic_beta", "yes"),
    ("dynamic_beta", 1),
    ("standardize", 0),
]
BASE_MODEL = dict(kind="sasrec", n_items=10, max_len=8, hidden=8, n_blocks=2, n_heads=2)


def _assert_names(err: pytest.ExceptionInfo, cls: str, key: str, value) -> None:
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{cls}.{key}"), msg
    shown = repr(value)
    assert shown in msg or (isinstance(value, float) and str(value) in msg), msg


@pytest.mark.parametrize("key,value", MODEL_BAD, ids=[f"{k}={v!r}" for k, v in MODEL_BAD])
def test_model_config_refuses(key, value):
    with pytest.raises(ConfigError) as err:
        ModelConfig.from_dict({**BASE_MODEL, key: value})
    _assert_names(err, "ModelConfig", key, value)


@pytest.mark.parametrize("key,value", TRAIN_BAD, ids=[f"{k}={v!r}" for k, v in TRAIN_BAD])
def test_train_config_refuses(key, value):
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict({key: value})
    _assert_names(err, "TrainConfig", key, value)


@pytest.mark.parametrize("key,value", DISTILL_BAD, ids=[f"{k}={v!r}" for k, v in DISTILL_BAD])
def test_distill_config_refuses(key, value):
    with pytest.raises(ConfigError) as err:
        DistillConfig.from_dict({key: value})
    _assert_names(err, "DistillConfig", key, value)


def test_cross_field_rules_name_both_keys():
    with pytest.raises(ConfigError, match=r"TrainConfig.min_epochs: expected at most epochs=3, got 5"):
        TrainConfig(epochs=3, min_epochs=5)
    with pytest.raises(ConfigError, match=r"ModelConfig.hidden: 30 is not divisible by n_heads=4"):
        ModelConfig(**{**BASE_MODEL, "hidden": 30, "n_heads": 4})


def test_good_values_are_normalised():
    t = TrainConfig(lr=1, grad_clip=0, valid_ks=[5, 20], valid_metric="recall@10", patience=None, stride=None)
    assert isinstance(t.lr, float) and t.lr == 1.0 and t.valid_ks == (5, 10, 20)
    assert TrainConfig.from_dict(t.to_dict()) == t
    assert TrainConfig(valid_ks=(np.int64(10),)).valid_ks == (10,)
    m = ModelConfig(**{**BASE_MODEL, "kind": "BERT4Rec", "dropout": 0})
    assert m.kind == "bert4rec" and m.dropout == 0.0 and isinstance(m.dropout, float)
    assert ModelConfig(**{**BASE_MODEL, "kind": "bert"}).kind == "bert4rec"
    d = DistillConfig(alpha=1, gamma=-0.5, epochs=0, block=-2)
    assert d.alpha == 1.0 and d.epochs == 0 and DistillConfig.from_dict(d.to_dict()) == d


@pytest.mark.parametrize("block,ok", [(-3, False), (-2, True), (-1, True), (0, True), (1, True), (2, False)])
def test_block_must_exist_in_the_model(block, ok):
    model = ModelConfig(**BASE_MODEL)  # n_blocks = 2
    if ok:
        check_block(DistillConfig(block=block), model)
        return
    with pytest.raises(ConfigError, match=rf"DistillConfig.block: .*n_blocks=2.*got {block}$"):
        check_block(DistillConfig(block=block), model)


# ----------------------------------------------------------- checked by the trainer, before work
@pytest.fixture(scope="module")
def tiny_ds():
    rows = [(u, (u + t) % 12 + 1, t) for u in range(30) for t in range(6)]
    df = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    return prepare(df, k_core=None, split=SplitConfig(kind="leave_one_out"), name="tiny")


def _model(ds, **kw):
    return build_model(ModelConfig(**{**BASE_MODEL, "n_items": ds.n_items, **kw}))


def test_trainer_refuses_a_term_that_does_not_fit_before_any_work(tiny_ds, tmp_path):
    model = _model(tiny_ds)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    targets = np.zeros((tiny_ds.n_users, 8), np.float32)
    cases = [
        (DistillationTerm(targets, None, DistillConfig(block=2)), ConfigError, r"DistillConfig.block"),
        (
            DistillationTerm(np.zeros((tiny_ds.n_users, 5), np.float32), None),
            ConfigError,
            r"target size 5 != ModelConfig.hidden 8",
        ),
        (
            DistillationTerm(targets[:-1], None),
            DataError,
            rf"{tiny_ds.n_users - 1} target rows.*{tiny_ds.n_users} users",
        ),
    ]
    for term, exc, pattern in cases:
        with pytest.raises(exc, match=pattern):
            Trainer(
                model,
                tiny_ds,
                TrainConfig(epochs=1, progress=False, device="cpu"),
                run_dir=tmp_path / "run",
                extra_losses=[term],
            )
    assert not (tmp_path / "run").exists()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_missing_device_is_a_config_error(tiny_ds, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"TrainConfig.device: 'cuda' asked for, but CUDA is not available"):
        Trainer(_model(tiny_ds), tiny_ds, TrainConfig(device="cuda", progress=False))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"'cuda:3' asked for, but this machine has 1 CUDA device"):
        Trainer(_model(tiny_ds), tiny_ds, TrainConfig(device="cuda:3", progress=False))


def test_model_for_another_catalogue_is_refused(tiny_ds):
    with pytest.raises(ConfigError, match=rf"n_items: model has 99, dataset 'tiny' has {tiny_ds.n_items}"):
        Trainer(build_model(ModelConfig(**{**BASE_MODEL, "n_items": 99})), tiny_ds, TrainConfig(progress=False))


def test_non_finite_distillation_targets_are_refused_by_row():
    t = np.zeros((5, 3), np.float32)
    t[3, 1] = np.nan
    with pytest.raises(DataError, match=r"target row 3 .*column 1 is nan"):
        DistillationTerm(t, None)
    # a NaN in the row of a user WITHOUT a profile is never used: accepted, and zeroed
    mask = np.array([True, True, True, False, True])
    term = DistillationTerm(t, mask, DistillConfig(standardize=True))
    assert torch.isfinite(term._targets).all() and not term._targets[3].any()
    assert math.isfinite(float(term._targets.sum()))


# ----------------------------------------------------------- every DictConfig, through from_dict
def _dict_configs() -> list[type]:
    """Every DictConfig subclass of the package (their modules imported first)."""
    import importlib

    from seqdistill._config import DictConfig

    for module in (
        "seqdistill.datasets",
        "seqdistill.data.synthetic",
        "seqdistill.data.prepare",
        "seqdistill.models.base",
        "seqdistill.training.config",
        "seqdistill.training.distill",
        "seqdistill.profiles.history",
        "seqdistill.profiles.llm",
        "seqdistill.profiles.encode",
        "seqdistill.profiles.reduce",
        "seqdistill.profiles.stats_profile",
    ):
        importlib.import_module(module)
    return sorted(DictConfig.__subclasses__(), key=lambda c: c.__name__)


# A value of the wrong kind for each annotation, chosen by hand (not by the checker under test).
WRONG = {
    "int": "3",
    "float": "0.5",
    "bool": "yes",
    "str": 3,
    "tuple[int, ...]": "10",
    "tuple[str, ...]": 7,
    "list[str] | None": "title",
    "int | None": "3",
    "float | None": "x",
    "str | None": 5,
}


def _wrong_cases() -> list[tuple[type, str, object]]:
    from dataclasses import fields

    cases = []
    for cls in _dict_configs():
        for f in fields(cls):
            if str(f.type) in WRONG:
                cases.append((cls, f.name, WRONG[str(f.type)]))
    return cases


def test_the_sweep_covers_every_config_class():
    covered = {cls.__name__ for cls, _, _ in _wrong_cases()}
    assert covered >= {
        "DatasetInfo",
        "EncoderConfig",
        "GenerationConfig",
        "HistoryConfig",
        "ModelConfig",
        "ReduceConfig",
        "SplitConfig",
        "StatsConfig",
        "SyntheticConfig",
        "TrainConfig",
        "DistillConfig",
    }


@pytest.mark.parametrize("cls,key,value", _wrong_cases(), ids=lambda x: getattr(x, "__name__", repr(x)))
def test_from_dict_names_class_key_and_value_of_a_wrong_type(cls, key, value):
    """A value of the wrong type is a ConfigError ``Class.key: expected ..., got value`` (never a
    TypeError from deep inside the class)."""
    from dataclasses import MISSING, fields

    valid = {"str": "x", "bool": False, "int": 1}
    required = {
        f.name: valid[str(f.type)] for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
    }
    with pytest.raises(ConfigError) as err:
        cls.from_dict({**required, key: value})
    _assert_names(err, cls.__name__, key, value)


@pytest.mark.parametrize("cls", _dict_configs(), ids=lambda c: c.__name__)
def test_from_dict_unknown_key_and_not_a_dict(cls):
    with pytest.raises(ConfigError, match=rf"^{cls.__name__}\.from_dict: unknown keys \['colour'\] \(colour = 'red'\)"):
        cls.from_dict({"colour": "red"})
    with pytest.raises(ConfigError, match=rf"^{cls.__name__}\.from_dict: expected a table .*got \[1, 2\]"):
        cls.from_dict([1, 2])  # type: ignore[arg-type]


def test_from_dict_missing_required_key():
    from seqdistill.datasets import DatasetInfo

    with pytest.raises(ConfigError, match=r"DatasetInfo\.from_dict: missing required keys \['domain', 'name'"):
        DatasetInfo.from_dict({})


@pytest.mark.parametrize(
    "key,value",
    [("n_users", "10"), ("n_users", True), ("median_length", "6"), ("p_explore", NAN), ("name", 3), ("n_items", 2.0)],
)
def test_synthetic_config_types_are_config_errors(key, value):
    from seqdistill.data.synthetic import SyntheticConfig

    with pytest.raises(ConfigError) as err:
        SyntheticConfig(**{key: value})
    _assert_names(err, "SyntheticConfig", key, value)
    with pytest.raises(ConfigError):
        SyntheticConfig.from_dict({key: value})


def test_synthetic_config_ranges_on_construction_and_numbers_normalised():
    from seqdistill.data.synthetic import SyntheticConfig

    with pytest.raises(ConfigError, match=r"SyntheticConfig: n_users=0 is out of range"):
        SyntheticConfig(n_users=0)
    cfg = SyntheticConfig(median_length=5, n_users=np.int64(20))
    assert isinstance(cfg.median_length, float) and cfg.median_length == 5.0
    assert type(cfg.n_users) is int and cfg.n_users == 20


@pytest.mark.parametrize("value", [10**400, -(10**400)], ids=["1e400", "-1e400"])
def test_an_integer_no_float_holds_is_refused_where_a_float_goes(value):
    """``math.isfinite(10**400)`` raises OverflowError: a ConfigError naming the field instead."""
    for build in (lambda: TrainConfig(lr=value), lambda: TrainConfig.from_dict({"lr": value})):
        with pytest.raises(ConfigError, match=r"^TrainConfig\.lr: expected a finite number, got -?1000"):
            build()


@pytest.mark.parametrize("seed", [-1, 2**32, 10**23, True, 1.0])
def test_every_seed_is_an_integer_below_2_32(seed):
    # torch takes 64-bit seeds, numpy's legacy seeding (UMAP) 32-bit: one limit for all of them,
    # checked where the config is made instead of deep inside a run.
    from seqdistill.profiles.llm import GenerationConfig
    from seqdistill.profiles.probe import ProbeConfig
    from seqdistill.profiles.reduce import ReduceConfig

    for make in (
        lambda: TrainConfig(seed=seed),
        lambda: GenerationConfig(seed=seed),
        lambda: ProbeConfig(seed=seed),
        lambda: ReduceConfig(seed=seed),
    ):
        with pytest.raises(ConfigError, match="seed"):
            make()
    assert TrainConfig(seed=2**32 - 1).seed == 2**32 - 1


def test_cli_seed_type_names_the_limit():
    import argparse

    from seqdistill.cli._common import seed_int

    assert seed_int("4294967295") == 2**32 - 1
    for bad_text in ("4294967296", "-1", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            seed_int(bad_text)
