"""Model folders (safetensors + JSON, never a pickle), the model registry and the import graph of
``seqdistill.models``."""

from __future__ import annotations

import ast
import json
import pickle
import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from safetensors import safe_open  # noqa: E402

import seqdistill.models as models_pkg  # noqa: E402
from seqdistill.errors import ConfigError, DataError, OutputError  # noqa: E402
from seqdistill.models import (  # noqa: E402
    BERT4Rec,
    ModelConfig,
    SASRec,
    build_model,
    load_model,
    model_class,
    model_kinds,
    register_model,
    registry,  # noqa: E402
)

torch.set_num_threads(1)


def small(kind="sasrec", **kw) -> ModelConfig:
    return ModelConfig(**{**dict(kind=kind, n_items=12, max_len=6, hidden=8, n_blocks=2, n_heads=2), **kw})


class Payload:
    """Unpickling this creates ``marker``: proof that a pickle ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def plant(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps({"weights": Payload(marker)}))


# ------------------------------------------------------------------------- save / load
def test_saved_folder_is_safetensors_and_json_only(tmp_path):
    torch.manual_seed(0)
    m = build_model(small())
    m.set_item_ids([None] + [f"i{k}" for k in range(1, 13)])
    m.save(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["config.json", "model.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name != "model"]  # no temporaries left beside it
    meta = json.loads((tmp_path / "model" / "config.json").read_text())
    assert meta["config"] == m.config.to_dict() and meta["item_ids"][1] == "i1"
    # read back with the safetensors library itself, not with our loader
    with safe_open(str(tmp_path / "model" / "model.safetensors"), framework="pt") as f:
        assert set(f.keys()) == set(m.state_dict())
        for k, v in m.state_dict().items():
            assert torch.equal(f.get_tensor(k), v), k


def test_old_pickled_weights_are_refused_without_running_them(tmp_path):
    folder, marker = tmp_path / "old", tmp_path / "pwned"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"format": 1, "config": small().to_dict(), "item_ids": None}))
    plant(folder / "weights.pt", marker)
    with pytest.raises(DataError, match=r"weights\.pt: model weights in the old pickle format.*docs/models\.md"):
        load_model(folder)
    assert not marker.exists()
    # sanity: the payload does run when unpickled, so the test above would have caught a load
    pickle.loads((folder / "weights.pt").read_bytes())
    assert marker.exists()


def test_save_never_replaces_a_folder_it_did_not_write(tmp_path):
    m = build_model(small())
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "todo.txt").write_text("keep me")
    with pytest.raises(OutputError, match="not a seqdistill model folder"):
        m.save(mine)
    assert (mine / "todo.txt").read_text() == "keep me"
    # a model folder with a user's file added is not ours to replace either
    m.save(tmp_path / "model")
    (tmp_path / "model" / "README").write_text("mine")
    with pytest.raises(OutputError):
        m.save(tmp_path / "model")
    assert (tmp_path / "model" / "README").read_text() == "mine"


def test_save_replaces_its_own_folder_unless_told_not_to(tmp_path):
    torch.manual_seed(0)
    a, b = build_model(small()), build_model(small())
    a.save(tmp_path / "model")
    with pytest.raises(OutputError, match="overwrite"):
        b.save(tmp_path / "model", overwrite=False)
    b.save(tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    for k, v in b.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_damaged_model_folders_are_named(tmp_path):
    m = build_model(small())
    m.save(tmp_path / "model")
    w = tmp_path / "model" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(DataError, match=r"model\.safetensors: not a readable safetensors file"):
        load_model(tmp_path / "model")
    # weights of another architecture
    build_model(small(hidden=16)).save(tmp_path / "other")
    (tmp_path / "model" / "model.safetensors").write_bytes((tmp_path / "other" / "model.safetensors").read_bytes())
    with pytest.raises(DataError, match=r"tensor '.*' is \(.*16.*\).*the model needs"):
        load_model(tmp_path / "model")
    cfg = tmp_path / "model" / "config.json"
    cfg.write_text(json.dumps({"format": 2, "config": {**small().to_dict(), "dropout": 2.0}}))
    with pytest.raises(ConfigError, match=r"config\.json: ModelConfig\.dropout"):
        load_model(tmp_path / "model")
    cfg.write_text("{not json")
    with pytest.raises(DataError, match=r"config\.json: not valid JSON"):
        load_model(tmp_path / "model")
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        load_model(tmp_path / "nowhere")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_weights_with_nan_or_infinite_values_are_refused_naming_the_tensor(tmp_path, bad):
    # A diverged or tampered model would score every item NaN and "rank" in index order.
    from safetensors.torch import save_file

    m = build_model(small())
    m.save(tmp_path / "model")
    state = {k: v.clone() for k, v in m.state_dict().items()}
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name].view(-1)[0] = bad
    save_file(state, str(tmp_path / "model" / "model.safetensors"))
    with pytest.raises(DataError, match=rf"model\.safetensors: tensor '{re.escape(name)}' holds NaN or infinite"):
        load_model(tmp_path / "model")


# ----------------------------------------------------------------------------- registry
def test_registry_maps_kinds_and_aliases_to_classes():
    assert model_kinds() == ["bert4rec", "sasrec"]
    assert model_class("sasrec") is SASRec and model_class("SASRec") is SASRec
    assert model_class("bert4rec") is BERT4Rec and model_class("bert") is BERT4Rec
    assert type(build_model(small("BERT4Rec"))) is BERT4Rec
    with pytest.raises(ConfigError, match=r"unknown model kind 'gru'; known kinds are \['bert4rec', 'sasrec'\]"):
        model_class("gru")
    with pytest.raises(ConfigError, match="SASRec: ModelConfig.kind is 'bert4rec', expected 'sasrec'"):
        SASRec(small("bert4rec"))


class TinyCausal(SASRec):
    """A new model: registered under its own kind, built and reloaded without touching base.py."""

    kind = "tinycausal"


def test_a_registered_model_is_built_saved_and_loaded(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    monkeypatch.setattr(registry, "_ALIASES", dict(registry._ALIASES))
    register_model("tinycausal", f"{__name__}:TinyCausal", aliases=("tiny",))
    m = build_model(small("tiny"))
    assert type(m) is TinyCausal and m.config.kind == "tinycausal"
    m.save(tmp_path / "m")
    assert type(load_model(tmp_path / "m")) is TinyCausal
    with pytest.raises(ConfigError, match="alias 'sasrec' is already a model kind"):
        register_model("other", TinyCausal, aliases=("sasrec",))


# ----------------------------------------------------------------------- import graph
def _imports(path: Path, package: str) -> set[str]:
    """Modules of ``package`` that ``path`` imports anywhere (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative to the package
                base = package + ("." + node.module if node.module else "")
                names = [base] if node.module else [f"{package}.{a.name}" for a in node.names]
            else:
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n for n in names if n.startswith(package + ".")}
    return found


def test_models_package_has_no_import_circle():
    folder = Path(models_pkg.__file__).parent
    mods = {f"seqdistill.models.{p.stem}": p for p in folder.glob("*.py") if p.stem != "__init__"}
    graph = {m: {i for i in _imports(p, "seqdistill.models") if i in mods} for m, p in mods.items()}
    # base.py imports none of its subclasses
    assert not graph["seqdistill.models.base"] & {"seqdistill.models.sasrec", "seqdistill.models.bert4rec"}
    assert "seqdistill.models.registry" in graph["seqdistill.models.base"]
    # and the graph has no cycle (depth-first search)
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in graph[m]:
            assert state.get(n) != 1, f"import circle: {' -> '.join(path + [n])}"
            if n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])


def test_the_circle_finder_finds_a_circle(tmp_path):
    """The walker above is not vacuous: it sees a relative import back into the package."""
    p = tmp_path / "base.py"
    p.write_text("def build():\n    from .sasrec import SASRec\n    return SASRec\n")
    assert _imports(p, "seqdistill.models") == {"seqdistill.models.sasrec"}
