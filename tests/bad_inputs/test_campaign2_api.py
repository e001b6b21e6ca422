"""Third campaign, the Python API: arguments of the wrong kind reach the library from a notebook
or from ``-o KEY=VALUE`` and must be a :class:`~seqdistill.errors.SeqdistillError` naming the
argument, never an AttributeError or IndexError from deep inside; plus two audits of the source
(nothing is unpickled; every file is written through ``seqdistill._io``)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import seqdistill
from seqdistill.errors import ConfigError, DataError, SeqdistillError, StoreError

H = "user_id,item_id,timestamp\n"


@pytest.fixture
def log(tmp_path: Path) -> Path:
    p = tmp_path / "log.csv"
    p.write_text(H + "".join(f"{u},{i},{10 * u + i}\n" for u in (1, 2, 3) for i in (10, 11, 12)))
    return p


def _read(path, *a, **k):
    from seqdistill.data import read_interactions

    return read_interactions(path, *a, **k)


CALLS = [
    ("columns-a-number", lambda p: _read(p, 3), DataError, ["columns", "3"]),
    ("columns-a-list", lambda p: _read(p, ["user_id"]), DataError, ["columns", "['user_id']"]),
    ("separator-two-characters", lambda p: _read(p, separator=";;"), DataError, ["separator", "';;'"]),
    ("separator-non-ascii", lambda p: _read(p, separator="§"), DataError, ["separator", "'§'"]),
    ("timestamp-format-a-number", lambda p: _read(p, timestamp_format=5), DataError, ["timestamp_format", "5"]),
    ("format-upper-case", lambda p: _read(p, format="CSV"), DataError, ["'CSV'", "'csv'"]),
]


@pytest.mark.parametrize("call, error, names", [c[1:] for c in CALLS], ids=[c[0] for c in CALLS])
def test_read_interactions_arguments(log: Path, call, error, names) -> None:
    with pytest.raises(error) as e:
        call(log)
    for name in names:
        assert name in str(e.value), (name, str(e.value))


def test_normalize_needs_a_data_frame() -> None:
    from seqdistill.data import normalize_interactions

    with pytest.raises(DataError, match="polars DataFrame.*dict"):
        normalize_interactions({"user_id": [1], "item_id": [1], "timestamp": [1]})
    with pytest.raises(DataError, match="polars DataFrame.*LazyFrame"):
        normalize_interactions(pl.DataFrame({"user_id": [1], "item_id": [1], "timestamp": [1]}).lazy())


def test_an_empty_table_of_untyped_columns_is_an_empty_log() -> None:
    from seqdistill.data import prepare

    empty = pl.DataFrame({"user_id": [], "item_id": [], "timestamp": []})
    with pytest.raises(DataError, match="empty"):
        prepare(empty, k_core=1)


def test_datasets_load_options() -> None:
    from seqdistill import datasets

    raw = datasets.load("synthetic", name="mine", n_users=40, n_items=20)
    assert raw.name == "mine"
    with pytest.raises(ConfigError, match="bogus"):
        datasets.load("ml-1m", bogus=1)
    with pytest.raises(ConfigError, match=r"n_users.*100000000000000000000"):
        datasets.synthetic(n_users=10**20)


def test_describe_a_table(log: Path) -> None:
    """``datasets.describe`` of a read table gives Table 1's numbers for it (3 users x 3 items)."""
    from seqdistill import datasets

    stats = datasets.describe(_read(log))
    assert (stats["users"], stats["items"], stats["interactions"], stats["density"]) == (3, 3, 9, 1.0)
    with pytest.raises(DataError, match="int"):
        datasets.describe(3)


def test_read_items_duplicate_header(tmp_path: Path) -> None:
    from seqdistill.data.interactions import read_items

    (tmp_path / "i.csv").write_text("item_id,title,item_id\n10,a,11\n")
    with pytest.raises(DataError, match=r"i\.csv.*'item_id' 2 times"):
        read_items(tmp_path / "i.csv")


def test_store_meta_must_be_a_table(tmp_path: Path) -> None:
    from seqdistill.profiles.store import ProfileStore

    with pytest.raises(StoreError, match=r"meta.*list"):
        ProfileStore(tmp_path / "s", meta=[1, 2])
    assert not (tmp_path / "s").exists()


def test_encoder_model_must_be_a_path(tmp_path: Path) -> None:
    from seqdistill.profiles import EncoderConfig

    with pytest.raises(ConfigError, match=r"EncoderConfig.model.*3"):
        EncoderConfig(model=3)


def test_reduce_refuses_complex_embeddings(tmp_path: Path) -> None:
    from seqdistill.profiles import ReduceConfig, reduce_targets

    with pytest.raises(DataError, match="complex"):
        reduce_targets(np.arange(3), np.ones((3, 4), dtype=complex), 3, tmp_path / "t", ReduceConfig("pca", 2))
    assert not (tmp_path / "t").exists()


def test_load_config_of_a_folder(tmp_path: Path) -> None:
    from seqdistill.experiments import load_config

    (tmp_path / "c.toml").mkdir()
    with pytest.raises(ConfigError, match=r"c\.toml: is a folder"):
        load_config(tmp_path / "c.toml")


def test_every_error_is_one_class() -> None:
    """What the CLI maps to exit 2: every class the library raises on purpose."""
    for cls in (DataError, ConfigError, StoreError):
        assert issubclass(cls, SeqdistillError)


# ------------------------------------------------------------------------------ audits
PKG = Path(seqdistill.__file__).parent
SOURCES = {p.relative_to(PKG).as_posix(): ast.parse(p.read_text()) for p in sorted(PKG.rglob("*.py"))}


def _calls(tree: ast.AST) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)]


def test_nothing_is_unpickled() -> None:
    """No pickle/joblib/dill, no torch.load (weights are safetensors), no np.load that may unpickle."""
    found = []
    for name, tree in SOURCES.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                found += [
                    (name, m) for m in mods if m.split(".")[0] in ("pickle", "cPickle", "joblib", "dill", "cloudpickle")
                ]
        for call in _calls(tree):
            f = ast.unparse(call.func)
            kw = {k.arg: ast.unparse(k.value) for k in call.keywords}
            if f.endswith("torch.load"):
                found.append((name, f))
            if f in ("np.load", "numpy.load") and kw.get("allow_pickle") != "False":
                found.append((name, ast.unparse(call)))
            if f.endswith("read_pickle") or f.endswith("pickle.loads"):
                found.append((name, f))
    assert found == []


# Calls that write a file, and where they may be: inside seqdistill/_io.py, or writing into a
# temporary folder that ``_io.atomic_dir`` yields (the ``with ... as tmp`` block), or handed to
# ``_io.write_with``/``_io.atomic_file`` as the writer.
WRITERS = (
    "write_text",
    "write_bytes",
    "np.save",
    "np.savez",
    "np.savez_compressed",
    "torch.save",
    "save_file",
    "write_parquet",
    "to_parquet",
    "write_csv",
    "write_ndjson",
    "write_json",
    "json.dump",
    "savefig",
    "save_pretrained",
)


def _writes(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, call) of every write outside an ``atomic_dir``/``atomic_file`` block or a
    ``write_with`` writer (calls on ``_io`` itself are the sanctioned way and not listed)."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.With) and any(
            "atomic_dir" in ast.unparse(i.context_expr) or "atomic_file" in ast.unparse(i.context_expr)
            for i in node.items
        ):
            inside |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
        if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("write_with"):
            inside |= {id(n) for a in node.args[1:] for n in ast.walk(a)}
    from_io = {  # ``from seqdistill._io import write_json``: the sanctioned writer under its own name
        a.asname or a.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module in ("seqdistill._io", "_io")
        for a in node.names
    }
    out = []
    for call in _calls(tree):
        f = ast.unparse(call.func)
        if f.startswith("_io.") or f in from_io or id(call) in inside:
            continue
        if f in WRITERS or any(f.endswith("." + w) for w in WRITERS):
            out.append((call.lineno, f))
        if f == "open" and len(call.args) > 1 and any(c in ast.unparse(call.args[1]) for c in "wax+"):
            out.append((call.lineno, ast.unparse(call)))
    return out


def test_every_file_is_written_through_io() -> None:
    found = {name: w for name, tree in SOURCES.items() if name != "_io.py" and (w := _writes(tree))}
    # models/base.py and training/checkpoint.py write inside atomic_dir; anything listed here bypasses _io.
    assert found == {}


def test_the_writer_audit_finds_a_planted_bypass() -> None:
    planted = ast.parse("import numpy as np\ndef f(p, x):\n    np.save(p, x)\n    open(p, 'w').write('x')\n")
    assert [f for _, f in _writes(planted)] == ["np.save", "open(p, 'w')"]
    ok = ast.parse(
        "def f(p, x):\n    with _io.atomic_dir(p, is_ours=g, what='w') as tmp:\n        x.write_parquet(tmp / 'a')\n"
    )
    assert _writes(ok) == []


def test_os_level_writes_are_the_store_lock_only() -> None:
    found = []
    for name, tree in SOURCES.items():
        for call in _calls(tree):
            if ast.unparse(call.func) == "os.open" and "O_CREAT" in ast.unparse(call):
                found.append(name)
    assert found == ["profiles/store.py"]
