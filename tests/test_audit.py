"""The split audit and the compat filter: every count of ``PreparedDataset.audit`` against a
plain-Python reference on random logs (hypothesis), logs that peel for many rounds (past the
core's switch to wave peeling), the compat filter on a hand-made log, the audit's round trip
through the dataset folder, and the command line printing it."""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path
from typing import get_args

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import seqdistill as sd
from seqdistill import core
from seqdistill.cli import main
from seqdistill.data import DataError, PreparedDataset, SplitConfig
from seqdistill.data.dataset import FilterRound, PartCounts, SplitAudit
from seqdistill.errors import SeqdistillWarning

Row = tuple[int, int, int]  # user, item, timestamp


# ---------------------------------------------------------------------------- references
def reference_filter(rows: list[Row], k_user: int, k_item: int, filter: str) -> tuple[list[bool], list[tuple]]:
    """Rounds on the current log, recounted from scratch: the k-core drops rows whose user has
    fewer than k_user rows or whose item fewer than k_item, until nothing changes; compat drops,
    once, rows whose user has at most k_user rows or whose item at most k_item. Per round: the
    users and items present before it and absent after it, and the rows it dropped."""
    keep = [True] * len(rows)
    rounds = []
    while True:
        alive = [r for r, k in zip(rows, keep) if k]
        uc, ic = Counter(r[0] for r in alive), Counter(r[1] for r in alive)
        if filter == "compat":
            fails = [uc[u] <= k_user or ic[i] <= k_item for u, i, _ in rows]
        else:
            fails = [uc[u] < k_user or ic[i] < k_item for u, i, _ in rows]
        drop = [j for j in range(len(rows)) if keep[j] and fails[j]]
        if not drop:
            return keep, rounds
        for j in drop:
            keep[j] = False
        after = [r for r, k in zip(rows, keep) if k]
        uc2, ic2 = Counter(r[0] for r in after), Counter(r[1] for r in after)
        rounds.append((len(set(uc) - set(uc2)), len(set(ic) - set(ic2)), len(drop)))
        if filter == "compat":
            return keep, rounds


def reference_audit(ds: PreparedDataset) -> dict:
    """The split audit counted row by row over the saved log and split."""
    test_cut, valid_cut = ds.stats["test_threshold"], ds.stats["valid_threshold"]
    train_items, at_test, at_valid = set(), 0, 0
    for u in range(ds.n_users):
        start = int(ds.offsets[u])
        for r in range(start, start + int(ds.train_end[u])):
            train_items.add(int(ds.items[r]))
            at_test += test_cut is not None and ds.timestamps[r] >= test_cut
            at_valid += valid_cut is not None and ds.timestamps[r] >= valid_cut
    test_users, test_pos = ds.targets("test")
    targets = [int(ds.items[ds.offsets[u] + p]) for u, p in zip(test_users, test_pos)]
    unseen = [i for i in targets if i not in train_items]
    return {
        "train": PartCounts(sum(1 for e in ds.train_end if e > 0), int(sum(ds.train_end))),
        "valid": PartCounts(len(set(ds.targets("valid")[0].tolist())), len(ds.targets("valid")[0])),
        "test": PartCounts(len(set(test_users.tolist())), len(test_users)),
        "train_rows_at_or_after_test_cutoff": None if test_cut is None else at_test,
        "train_rows_at_or_after_valid_cutoff": None if valid_cut is None else at_valid,
        "test_users_without_train": sum(1 for u in set(test_users.tolist()) if ds.train_end[u] == 0),
        "test_targets_unseen_item": len(unseen),
        "test_items_unseen": len(set(unseen)),
    }


def frame(rows: list[Row]) -> pl.DataFrame:
    return pl.DataFrame(
        {"user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows], "timestamp": [r[2] for r in rows]},
        schema={"user_id": pl.Int64, "item_id": pl.Int64, "timestamp": pl.Int64},
    )


def check_against_reference(rows: list[Row], k: tuple[int, int], filter: str, split: SplitConfig) -> None:
    keep, rounds = reference_filter(rows, *k, filter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SeqdistillWarning)  # a split without test targets is fine here
        try:
            ds = sd.prepare(frame(rows), k_core=k, split=split, filter=filter)
        except DataError as e:
            assert ("nothing left" in str(e)) == (not any(keep)), str(e)
            return
    a = ds.audit
    assert a is not None and a.filter == filter and a.split == split.kind and (a.k_user, a.k_item) == k
    assert (a.rows_in, a.users_in, a.items_in) == (len(rows), len({r[0] for r in rows}), len({r[1] for r in rows}))
    assert [(r.users, r.items, r.rows) for r in a.filter_rounds] == rounds
    assert [r.round for r in a.filter_rounds] == list(range(1, len(rounds) + 1))
    kept = sorted(r for r, k in zip(rows, keep) if k)
    user_ids, item_ids = ds.user_ids.to_list(), ds.item_ids.to_list()
    got = sorted(
        (user_ids[u], item_ids[int(ds.items[j])], int(ds.timestamps[j]))
        for u in range(ds.n_users)
        for j in range(int(ds.offsets[u]), int(ds.offsets[u + 1]))
    )
    assert got == kept
    assert (a.test_cutoff, a.valid_cutoff) == (ds.stats["test_threshold"], ds.stats["valid_threshold"])
    want = reference_audit(ds)
    assert {key: getattr(a, key) for key in want} == want
    if split.kind == "global_temporal":
        assert a.train_rows_at_or_after_test_cutoff == 0
    else:
        assert a.train_rows_at_or_after_test_cutoff is None and a.test_cutoff is None


splits = st.one_of(
    st.builds(
        SplitConfig,
        kind=st.just("global_temporal"),
        quantile=st.sampled_from([0.5, 0.8]),
        target=st.sampled_from(core.TARGETS),
        valid=st.sampled_from(core.VALID_MODES),
    ),
    st.just(SplitConfig(kind="leave_one_out")),
)


# ------------------------------------------------------------------------- random logs
@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(st.tuples(st.integers(0, 15), st.integers(0, 12), st.integers(0, 30)), min_size=1, max_size=160),
    k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    filter=st.sampled_from(core.FILTERS),
    split=splits,
)
def test_audit_counts_equal_a_plain_reference_on_random_logs(rows, k, filter, split):
    check_against_reference(rows, k, filter, split)


@st.composite
def chain_logs(draw) -> list[Row]:
    """A path user-item-user-... hanging off a dense block: the 2-core peels the path one node
    per round from its free end (a long path: more rounds than the core scans before switching to
    wave peeling), and the block survives. Random rows are sprinkled on top."""
    block = [(u, 1000 + i) for u in range(3) for i in range(3)]
    length = draw(st.integers(1, 90))
    path, user, item = [], 0, 1000
    for j in range(length):
        if j % 2 == 0:
            item = 2000 + j
        else:
            user = 100 + j
        path.append((user, item))
    extra = draw(st.lists(st.tuples(st.integers(0, 200), st.integers(1000, 2100)), max_size=12))
    pairs = block + path + extra
    times = draw(st.lists(st.integers(0, 50), min_size=len(pairs), max_size=len(pairs)))
    return [(u, i, t) for (u, i), t in zip(pairs, times)]


@settings(max_examples=60, deadline=None)
@given(rows=chain_logs(), filter=st.sampled_from(core.FILTERS), split=splits)
def test_audit_counts_equal_the_reference_on_logs_that_peel_for_many_rounds(rows, filter, split):
    check_against_reference(rows, (2, 2), filter, split)


def test_a_long_chain_takes_more_rounds_than_the_scans_and_each_is_counted():
    """A path of 80 nodes off a dense block: 80 rounds, one node and one row each (the wave
    fallback starts after 32); the same counts from the row-level core.kcore."""
    block = [(u, 1000 + i, 0) for u in range(3) for i in range(3)]
    path, user = [], 0
    for j in range(80):
        item = 2000 + j if j % 2 == 0 else path[-1][1]
        user = 100 + j if j % 2 == 1 else user
        path.append((user, item, j))
    rows = block + path
    keep, rounds = reference_filter(rows, 2, 2, "kcore")
    assert len(rounds) == 80 and all(r[2] == 1 for r in rounds)
    ds = sd.prepare(frame(rows), k_core=2, split=SplitConfig(kind="leave_one_out"))
    assert [(r.users, r.items, r.rows) for r in ds.audit.filter_rounds] == rounds
    report = ds.audit.report()
    assert "  filter removed 40 users, 40 items, 80 rows in 80 round(s):" in report
    assert "    ... 65 more rounds (all of them in manifest.json) ..." in report
    assert (
        report[report.index("    round 10: 0 users, 1 items, 1 rows") + 2] == "    round 76: 0 users, 1 items, 1 rows"
    )
    codes = [core.encode_i64(np.array([r[c] for r in rows]))[0] for c in (0, 1)]
    kc = core.kcore(codes[0], codes[1], int(codes[0].max()) + 1, int(codes[1].max()) + 1, 2, 2)
    assert len(kc.removed) == kc.rounds == 80
    assert list(zip(kc.removed.users, kc.removed.items, kc.removed.rows)) == rounds


def test_filter_names_are_declared_once_in_rust():
    assert core.FILTERS == get_args(core.Filter) == ("kcore", "compat")


# --------------------------------------------------------------------------------- compat
# user, item, timestamp. Counts on the input: users a 5, b 3, c 3, d 2, e 1; items x 5, y 3, v 3,
# z 2, w 1.
HAND_LOG = [
    ("a", "x", 1),
    ("a", "y", 2),
    ("a", "z", 3),
    ("b", "x", 4),
    ("b", "y", 5),
    ("b", "z", 6),
    ("c", "x", 7),
    ("c", "y", 8),
    ("c", "w", 9),
    ("d", "x", 10),
    ("d", "v", 11),
    ("a", "x", 12),
    ("a", "v", 13),
    ("e", "v", 14),
]
# Compat with thresholds 2 keeps users a, b, c and items x, y, v (strictly more than 2 rows each,
# counted on the input): d and e go (2 and 1 rows), z and w go (2 and 1). (a, v) stays although
# v loses two of its three rows: both counts come from the input, not from a log with d and e
# already removed. Nothing is repeated, so b and c stay with two rows each.
HAND_KEPT = [("a", "x", 1), ("a", "y", 2), ("b", "x", 4), ("b", "y", 5), ("c", "x", 7), ("c", "y", 8)]
HAND_KEPT += [("a", "x", 12), ("a", "v", 13)]


def hand_frame() -> pl.DataFrame:
    return pl.DataFrame(HAND_LOG, schema=["user_id", "item_id", "timestamp"], orient="row")


def raw_rows(ds: PreparedDataset) -> list[tuple]:
    users, items = ds.user_ids.to_list(), ds.item_ids.to_list()
    return sorted(
        (users[u], items[int(ds.items[j])], int(ds.timestamps[j]))
        for u in range(ds.n_users)
        for j in range(int(ds.offsets[u]), int(ds.offsets[u + 1]))
    )


def test_compat_keeps_exactly_the_rows_of_one_strict_pass_on_a_hand_made_log():
    ds = sd.prepare(hand_frame(), k_core=2, split=SplitConfig(kind="leave_one_out"), filter="compat")
    assert raw_rows(ds) == sorted(HAND_KEPT)
    assert ds.user_ids.to_list() == ["a", "b", "c"] and ds.item_ids.to_list() == [None, "v", "x", "y"]
    a = ds.audit
    assert (a.filter, a.k_user, a.k_item) == ("compat", 2, 2)
    assert a.filter_rounds == (FilterRound(round=1, users=2, items=2, rows=6),)
    assert ds.manifest["filter"] == "compat" and ds.stats["kcore"]["filter"] == "compat"


def test_compat_differs_from_the_k_core_and_from_a_non_strict_pass():
    """The same log under the rules compat is not: the iterative core (>= 3, repeated) goes on
    after the first round; a pass with >= 2 (compat's > 1) keeps d."""
    # k-core, k = 3: round 1 drops d, e, z, w; round 2 b, c (two rows left) and v (one); round 3
    # x and y (a's rows are all that is left), and with them everything.
    with pytest.raises(DataError, match="nothing left after k-core with k_user=3, k_item=3"):
        sd.prepare(hand_frame(), k_core=3, split=SplitConfig(kind="leave_one_out"))
    compat1 = sd.prepare(hand_frame(), k_core=1, split=SplitConfig(kind="leave_one_out"), filter="compat")
    assert {r[0] for r in raw_rows(compat1)} == {"a", "b", "c", "d"}  # d has 2 rows > 1; e has 1


def test_compat_thresholds_may_be_zero_and_bad_filters_are_named():
    ds = sd.prepare(hand_frame(), k_core=0, split=SplitConfig(kind="leave_one_out"), filter="compat")
    assert ds.n_interactions == len(HAND_LOG) and ds.audit.filter_rounds == ()
    with pytest.raises(DataError, match=r"toy: k_core values must be in 1\.\.2\^32-1 with filter='kcore'"):
        sd.prepare(hand_frame(), k_core=0, name="toy")
    with pytest.raises(DataError, match=r"toy: filter must be one of \('kcore', 'compat'\), got 'strict'"):
        sd.prepare(hand_frame(), name="toy", filter="strict")
    with pytest.raises(DataError, match="nothing left after the compat filter with k_user=5"):
        sd.prepare(hand_frame(), k_core=5, filter="compat")


# ------------------------------------------------------------------------ save and load
def test_the_audit_survives_save_and_load(tmp_path: Path):
    ds = sd.prepare(hand_frame(), k_core=2, split=SplitConfig(valid="none"), filter="compat")
    ds.save(tmp_path / "ds")
    back = PreparedDataset.load(tmp_path / "ds")
    assert back.audit == ds.audit
    assert SplitAudit.from_dict(json.loads(json.dumps(ds.audit.to_dict()))) == ds.audit
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["audit"]["filter_rule"].startswith("single pass")
    assert manifest["audit"]["filter_rounds"] == [{"round": 1, "users": 2, "items": 2, "rows": 6}]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda a: a.pop("test"), "audit: missing key 'test'"),
        (lambda a: a.update(test_items_unseen=-1), "audit.test_items_unseen: expected a count"),
        (lambda a: a.update(filter_rounds=[{"round": 1}]), r"audit.filter_rounds\[0\]: expected an object with keys"),
        (lambda a: a.update(surprise=1), "audit: unknown key 'surprise'"),
        (lambda a: a.update(filter="strict"), r"audit.filter: must be one of \('kcore', 'compat'\), got 'strict'"),
        (lambda a: a["train"].update(rows=1), r"audit train.rows = 1 but the files hold"),
        (lambda a: a.update(rows_in=99), "audit rows_in minus the rows the filter rounds removed = 93"),
    ],
)
def test_a_damaged_audit_is_refused_on_load_naming_the_manifest(tmp_path: Path, edit, message):
    sd.prepare(hand_frame(), k_core=2, filter="compat").save(tmp_path / "ds")
    mf = tmp_path / "ds" / "manifest.json"
    manifest = json.loads(mf.read_text())
    edit(manifest["audit"])
    mf.write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=message) as e:
        PreparedDataset.load(tmp_path / "ds")
    assert str(mf) in str(e.value)


def test_a_dataset_saved_without_an_audit_loads_and_says_so(tmp_path: Path, capsys):
    ds = sd.prepare(hand_frame(), k_core=1)
    ds.manifest.pop("audit")
    ds.audit = None
    ds.save(tmp_path / "ds")
    assert PreparedDataset.load(tmp_path / "ds").audit is None
    assert main(["datasets", "describe", str(tmp_path / "ds")]) == 0
    assert "split audit: not recorded" in capsys.readouterr().out


# ------------------------------------------------------------------------------- the CLI
@pytest.fixture
def hand_csv(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in HAND_LOG))
    return path


def test_prepare_and_describe_print_the_audit(hand_csv: Path, capsys):
    argv = ["prepare", "log.csv", "--out", "out", "--compat", "--k-core", "2", "--split", "leave_one_out"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    ds = PreparedDataset.load("out")
    assert ds.audit.filter == "compat" and raw_rows(ds) == sorted(HAND_KEPT)
    for line in ds.audit.report():
        assert line in printed
    assert "filter: compat — single pass" in printed
    assert "filter removed 2 users, 2 items, 6 rows in 1 round(s):" in printed
    assert "round 1: 2 users, 2 items, 6 rows" in printed
    assert "train rows at or after the test cutoff: n/a: leave-one-out has no cutoff time" in printed
    # train: a's first two rows, b and c's first row each (leave-one-out keeps the last two out).
    assert "  train            3             4" in printed
    assert main(["datasets", "describe", "out"]) == 0
    described = capsys.readouterr().out
    for line in ds.audit.report():
        assert line in described


def test_prepare_filter_flags(hand_csv: Path, capsys):
    assert main(["prepare", "log.csv", "--out", "k", "--k-core", "1", "--filter", "kcore"]) == 0
    out = capsys.readouterr().out
    assert "filter: kcore — iterative k-core" in out and "filter rounds: none removed anything" in out
    assert "train rows at or after the test cutoff: 0" in out
    assert PreparedDataset.load("k").audit.test_cutoff == pytest.approx(
        float(np.quantile([t for *_, t in HAND_LOG], 0.8))
    )
    assert main(["prepare", "log.csv", "--out", "c", "--filter", "compat", "--compat"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_datasets_prepare_passes_the_filter(tmp_path: Path, capsys):
    argv = ["datasets", "prepare", "synthetic", str(tmp_path / "syn"), "--compat", "--k-core", "2"]
    assert main([*argv, "-o", "n_users=60", "-o", "n_items=40"]) == 0
    out = capsys.readouterr().out
    ds = PreparedDataset.load(tmp_path / "syn")
    assert ds.audit.filter == "compat" and "filter: compat" in out
    for line in ds.audit.report():
        assert line in out
