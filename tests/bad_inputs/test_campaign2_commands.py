"""Third campaign, ``seqdistill datasets`` and ``seqdistill profiles``: names and options the
earlier rounds did not try, stores and embeddings that belong to another dataset, files that are
not what their name says, and output folders holding a user's file."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ._campaign2 import accepted

# ------------------------------------------------------------------------------ datasets
DATASETS = [
    ("prepare-name-other-case", ["prepare", "Synthetic", "out"], ["unknown dataset 'Synthetic'", "synthetic"]),
    ("prepare-name-like-a-path", ["prepare", "./synthetic", "out"], ["unknown dataset './synthetic'"]),
    ("prepare-empty-name", ["prepare", "", "out"], ["unknown dataset ''"]),
    ("option-list-for-int", ["prepare", "synthetic", "out", "-o", "n_users=[1,2]"], ["-o n_users=[1, 2]", "int"]),
    ("option-null-for-int", ["prepare", "synthetic", "out", "-o", "n_users=null"], ["-o n_users=null", "int"]),
    ("option-empty-value", ["prepare", "synthetic", "out", "-o", "n_users="], ['-o n_users=""', "int"]),
    ("option-empty-key", ["prepare", "synthetic", "out", "-o", "=5"], ["'=5'", "key=value"]),
    ("option-nan", ["prepare", "synthetic", "out", "-o", "p_transition=NaN"], ["p_transition", "nan"]),
    ("option-beyond-any-size", ["prepare", "synthetic", "out", "-o", f"n_users={10**20}"], ["n_users", str(10**20)]),
    (
        "split-threshold-word",
        ["prepare", "synthetic", "out", "--split", "threshold=abc"],
        ["--split threshold", "number"],
    ),
    ("split-threshold-nan", ["prepare", "synthetic", "out", "--split", "threshold=NaN"], ["--split threshold", "NaN"]),
    ("split-kind-number", ["prepare", "synthetic", "out", "--split", "kind=3"], ["--split kind=3", "string"]),
    ("split-quantile-one", ["prepare", "synthetic", "out", "--split", "quantile=1"], ["quantile", "1"]),
    ("ml-1m-path-is-a-file", ["prepare", "ml-1m", "out", "--path", "log.csv"], ["log.csv", "ratings.dat"]),
    ("ml-1m-empty-folder", ["prepare", "ml-1m", "out", "--path", "empty"], ["empty/ratings.dat", "no such file"]),
    ("beauty-not-gzip", ["prepare", "beauty", "out", "--path", "b.json.gz"], ["b.json.gz", "gzip"]),
    ("kion-wrong-columns", ["prepare", "kion", "out", "--path", "kion"], ["kion/interactions.csv", "missing column"]),
    ("describe-fifo", ["describe", "pipe.csv"], ["pipe.csv", "not a regular file"]),
    ("describe-folder", ["describe", "empty"], ["empty", "is a folder"]),
    ("describe-damaged-manifest", ["describe", "damaged"], ["damaged/manifest.json", "unreadable"]),
    ("describe-option-columns-number", ["describe", "log.csv", "-o", "columns=3"], ["columns", "3"]),
    ("describe-option-separator-two-bytes", ["describe", "log.csv", "-o", "separator=;;"], ["separator", "';;'"]),
    ("describe-option-format-number", ["describe", "log.csv", "-o", "timestamp_format=5"], ["timestamp_format", "5"]),
    ("describe-registered-bad-option", ["describe", "synthetic", "-o", "n_users=0"], ["n_users", "0"]),
]


@pytest.fixture
def odd_files(ws: Path) -> Path:
    """A FIFO, an empty folder, a dataset folder with a damaged manifest, a fake .json.gz, and a
    kion folder with the wrong columns."""
    os.mkfifo(ws / "pipe.csv")
    (ws / "empty").mkdir()
    (ws / "damaged").mkdir()
    (ws / "damaged" / "manifest.json").write_text("{not json")
    (ws / "b.json.gz").write_bytes(b"not gzip at all")
    (ws / "kion").mkdir()
    (ws / "kion" / "interactions.csv").write_text("x\n1\n")
    (ws / "kion" / "items.csv").write_text("item_id\n1\n")
    return ws


@pytest.mark.parametrize("argv, names", [c[1:] for c in DATASETS], ids=[c[0] for c in DATASETS])
def test_bad_datasets_command(ws: Path, odd_files: Path, refused, argv, names) -> None:
    refused("datasets", *argv, names=tuple(names))
    assert not (ws / "out").exists()


def test_describe_an_interactions_file(ws: Path, run) -> None:
    """``datasets describe FILE`` prints the statistics of the file as read (3 users x 3 items)."""
    r = accepted(ws, run, "datasets", "describe", "log.csv")
    assert "users: 3" in r.out and "interactions: 9" in r.out and "density: 1" in r.out


def test_a_loader_option_named_like_a_load_argument(ws: Path, run) -> None:
    """``-o name=...`` is the synthetic dataset's name, not ``load``'s own argument; a name with
    slashes is only a name (nothing is written outside the output folder)."""
    accepted(
        ws,
        run,
        "datasets",
        "prepare",
        "synthetic",
        "out",
        "-o",
        "name=../../x",
        "-o",
        "n_users=60",
        "-o",
        "n_items=30",
        "--k-core",
        "2",
    )
    assert json.loads((ws / "out" / "manifest.json").read_text())["name"] == "../../x"


# ------------------------------------------------------------------------------ profiles
LOG2 = "user_id,item_id,timestamp\n" + "".join(f"{u},{i},{10 * u + i}\n" for u in (1, 2, 3, 4) for i in (10, 11, 12))


@pytest.fixture
def two(ws: Path, run) -> Path:
    """Two prepared datasets: ``ds`` (3 users) and ``ds2`` (4 users), and a stats store for ``ds``."""
    (ws / "log2.csv").write_text(LOG2)
    assert run("prepare", "log.csv", "--out", "ds", "--k-core", "1").code == 0
    assert run("prepare", "log2.csv", "--out", "ds2", "--k-core", "1").code == 0
    assert run("profiles", "generate", "ds", "--store", "store", "--backend", "stats").code == 0
    return ws


def _meta_is_a_folder(ws: Path) -> None:
    (ws / "store" / "meta.json").unlink()
    (ws / "store" / "meta.json").mkdir()


def _foreign_part(ws: Path) -> None:
    pl.DataFrame({"a": [1]}).write_parquet(ws / "store" / "part-000099.parquet")


def _swap_log(ws: Path) -> None:
    os.replace(ws / "ds2" / "log.parquet", ws / "ds" / "log.parquet")


GENERATE = [
    ("store-of-another-dataset", "ds2", None, ["store", "fingerprint", "use a new store path"]),
    ("meta-json-is-a-folder", "ds", _meta_is_a_folder, ["store", "meta.json"]),
    ("meta-json-is-a-list", "ds", lambda ws: (ws / "store" / "meta.json").write_text("[1]"), ["meta.json", "list"]),
    ("foreign-parquet-in-store", "ds", _foreign_part, ["part-000099.parquet", "not a profile part"]),
    ("dataset-with-another-datasets-log", "ds", _swap_log, ["ds/log.parquet", "users.parquet"]),
    (
        "dataset-manifest-empty-object",
        "bad",
        lambda ws: ((ws / "bad").mkdir(), (ws / "bad" / "manifest.json").write_text("{}")),
        ["bad/manifest.json", "format_version"],
    ),
]


@pytest.mark.parametrize("dataset, damage, names", [c[1:] for c in GENERATE], ids=[c[0] for c in GENERATE])
def test_bad_generate(ws: Path, two: Path, refused, dataset, damage, names) -> None:
    if damage is not None:
        damage(ws)
    # the store's own lock file records who last held the lock: the one thing a refusal may touch
    refused(
        "profiles",
        "generate",
        dataset,
        "--store",
        "store",
        "--backend",
        "stats",
        names=tuple(names),
        may_change=("store/.lock",),
    )


def test_generate_with_a_cache_folder_that_cannot_be_made(ws: Path, two: Path, refused, monkeypatch) -> None:
    """HOME (where the model cache goes) is not writable: refused before the model is loaded."""
    import transformers

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the cache folder was checked")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_model)
    monkeypatch.delenv("SEQDISTILL_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(ws / "log.csv"))  # a file: no folder can be made below it
    refused("profiles", "generate", "ds", "--store", "s2", names=("log.csv", "SEQDISTILL_CACHE"))
    assert not (ws / "s2").exists()


def test_encode_with_a_folder_that_is_not_an_encoder(ws: Path, two: Path, refused) -> None:
    (ws / "enc").mkdir()
    refused("profiles", "encode", "--store", "store", "--out", "emb", "--encoder", "enc", names=("enc", "encoder"))


def test_encode_never_deletes_a_users_file_in_its_own_folder(ws: Path, two: Path, run, refused, monkeypatch) -> None:
    from seqdistill.profiles import encode

    class Tiny:
        def __init__(self, config=None) -> None:
            self.path, self.prefix, self.dim, self.max_seq_length = "tiny", "", 2, 8
            self.config = config or encode.EncoderConfig()

        def encode(self, texts, progress=False):
            return np.ones((len(texts), 2), dtype=np.float32)

    monkeypatch.setattr(encode, "TextEncoder", Tiny)
    assert run("profiles", "encode", "--store", "store", "--out", "emb").code == 0
    (ws / "emb" / "my-notes.txt").write_text("mine")
    refused("profiles", "encode", "--store", "store", "--out", "emb", "--overwrite", names=("emb", "my-notes.txt"))


def _emb(ws: Path, users=None, emb=None, folder: str = "emb") -> Path:
    d = ws / folder
    d.mkdir(exist_ok=True)
    np.save(d / "embedding_users.npy", np.arange(3) if users is None else users)
    np.save(d / "embeddings.npy", np.random.default_rng(0).normal(size=(3, 8)) if emb is None else emb)
    return d


REDUCE = ["profiles", "reduce", "ds", "--embeddings", "emb", "--out", "t", "--dim", "2", "--method", "pca"]


def test_reduce_text_file_named_npy(ws: Path, two: Path, refused) -> None:
    (_emb(ws) / "embeddings.npy").write_text("hello")
    r = refused(*REDUCE, names=("emb/embeddings.npy", "not a .npy file"))
    assert "pickle.load" not in r.err  # never advise unpickling a file the user was handed


def test_reduce_complex_embeddings(ws: Path, two: Path, refused) -> None:
    _emb(ws, emb=np.ones((3, 8), dtype=complex))
    refused(*REDUCE, names=("embeddings", "complex"))


def test_reduce_embeddings_of_another_dataset(ws: Path, two: Path, refused) -> None:
    """encode.json records the store's dataset; reducing them for another dataset is refused."""
    from seqdistill.data import PreparedDataset

    d = _emb(ws)
    fingerprint = PreparedDataset.load(ws / "ds").fingerprint()
    (d / "encode.json").write_text(json.dumps({"n": 3, "store_meta": {"fingerprint": fingerprint}}))
    refused(*REDUCE[:2], "ds2", *REDUCE[3:], names=("emb", "fingerprint", "log2"))


def test_reduce_fit_folder_with_a_users_file(ws: Path, two: Path, run, refused) -> None:
    _emb(ws)
    assert run(*REDUCE).code == 0
    (ws / "t" / "mine.txt").write_text("mine")
    refused(*REDUCE, "--refit", names=("t", "mine.txt"))
    assert (ws / "t" / "mine.txt").read_text() == "mine"


def test_reduce_damaged_fit(ws: Path, two: Path, run, refused) -> None:
    _emb(ws)
    assert run(*REDUCE).code == 0
    (ws / "t" / "fit_users.npy").write_bytes(b"")
    refused(*REDUCE, names=("t/fit_users.npy", "--refit"), may_change=("t",))


def test_reduce_fit_with_pickled_arrays(ws: Path, two: Path, run, refused) -> None:
    """A pca.npz holding an object array (a pickle) is refused, never loaded."""
    _emb(ws)
    assert run(*REDUCE).code == 0
    np.savez(ws / "t" / "pca.npz", mean=np.array([{"x": 1}], dtype=object), components=np.ones((2, 8)), evr=np.ones(2))
    np.save(ws / "t" / "fit_users.npy", np.array([0, 1]))  # user 2 is new: the saved reducer is needed
    np.save(ws / "t" / "fit_targets.npy", np.load(ws / "t" / "fit_targets.npy")[:2])
    refused(*REDUCE, names=("t/pca.npz",), may_change=("t",))


def test_reduce_embeddings_of_another_width(ws: Path, two: Path, run, refused) -> None:
    """A fit on 8-d embeddings, resumed with 6-d ones (another encoder): refused, naming both."""
    _emb(ws)
    assert run(*REDUCE).code == 0
    _emb(ws, emb=np.ones((3, 6)))
    refused(*REDUCE, names=("6-d", "8-d", "--refit"))


def test_reduce_empty_embeddings_file(ws: Path, two: Path, refused) -> None:
    (_emb(ws) / "embeddings.npy").write_bytes(b"")
    refused(*REDUCE, names=("emb/embeddings.npy", "empty"))


def test_reduce_embeddings_file_is_a_folder(ws: Path, two: Path, refused) -> None:
    d = _emb(ws)
    (d / "embeddings.npy").unlink()
    (d / "embeddings.npy").mkdir()
    refused(*REDUCE, names=("emb/embeddings.npy",))


def test_reduce_big_endian_fortran_embeddings_are_read(ws: Path, two: Path, run) -> None:
    x = np.random.default_rng(1).normal(size=(3, 8))
    _emb(ws, emb=np.asfortranarray(x.astype(">f8")))
    accepted(ws, run, *REDUCE, may_change=("t",))
    _emb(ws, emb=x.astype("<f8"), folder="emb2")
    accepted(ws, run, *REDUCE[:4], "emb2", "--out", "t2", *REDUCE[7:], may_change=("t2",))
    np.testing.assert_array_equal(np.load(ws / "t" / "targets.npy"), np.load(ws / "t2" / "targets.npy"))


def test_items_gzip_json_for_beauty(ws: Path, refused) -> None:
    """Beauty's metadata given as a .gz that is not gzip: the message names the file."""
    (ws / "ratings.csv").write_text("u1,i1,5,100\nu1,i2,4,101\n")
    (ws / "meta_Beauty.json.gz").write_bytes(gzip.compress(b"")[:5])
    refused("datasets", "prepare", "beauty", "out", "--path", "ratings.csv", names=("meta_Beauty.json.gz",))
