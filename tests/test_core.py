"""The Rust core against plain-Python references on random inputs (hypothesis) and hand cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqdistill import core
from seqdistill.errors import CoreError

SETTINGS = settings(max_examples=150, deadline=None)


# ------------------------------------------------------------------------------------ ids
@SETTINGS
@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=60) | st.lists(st.integers(-5, 40), max_size=60))
def test_encode_i64_matches_sorted_unique(values):
    arr = np.array(values, dtype=np.int64)
    codes, uniques = core.encode_i64(arr)
    ref = sorted(set(values))
    assert uniques.tolist() == ref
    assert codes.tolist() == [ref.index(v) for v in values]


@SETTINGS
@given(st.lists(st.text(max_size=6), max_size=60))
def test_encode_str_matches_sorted_unique(values):
    data = b"".join(v.encode() for v in values)
    offsets = np.cumsum([0] + [len(v.encode()) for v in values]).astype(np.int64)
    codes, first = core.encode_str((offsets, np.frombuffer(data, dtype=np.uint8) if data else np.zeros(0, np.uint8)))
    ref = sorted(set(values), key=lambda s: s.encode())
    assert [values[i] for i in first] == ref
    assert codes.tolist() == [ref.index(v) for v in values]


def views_of(values: list[str], cuts: list[int], pad: int) -> core.StringViews:
    """``string_view`` chunks of ``values`` built here, byte by byte from the Arrow spec (long
    values in two buffers per chunk, a gap before each; short ones padded with ``pad``)."""
    chunks = []
    bounds = [0, *sorted(c % (len(values) + 1) for c in cuts), len(values)]
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        views, bufs = bytearray(), [bytearray(), bytearray()]
        for j, v in enumerate(values[lo:hi]):
            b = v.encode()
            if len(b) <= 12:
                views += len(b).to_bytes(4, "little") + b + bytes([pad]) * (12 - len(b))
            else:
                buf = bufs[j % 2]
                buf += b"\xaa"
                views += len(b).to_bytes(4, "little") + b[:4] + (j % 2).to_bytes(4, "little")
                views += len(buf).to_bytes(4, "little")
                buf += b
        chunks.append((np.frombuffer(bytes(views), np.uint8), tuple(np.frombuffer(bytes(x), np.uint8) for x in bufs)))
    return core.StringViews(tuple(chunks))


@SETTINGS
@given(
    st.lists(st.text(max_size=16), max_size=60),
    st.lists(st.integers(0, 60), max_size=3),
    st.sampled_from([0, 0x41, 0xFF]),
)
def test_encode_str_views_matches_sorted_unique(values, cuts, pad):
    col = views_of(values, cuts, pad)
    assert len(col) == len(values)
    codes, first = core.encode_str(col)
    ref = sorted(set(values), key=lambda s: s.encode())
    assert [values[i] for i in first] == ref
    assert codes.tolist() == [ref.index(v) for v in values]


def test_views_pointing_outside_their_buffers_are_refused():
    values = ["short", "a value longer than twelve", "another long one"]
    good = views_of(values, [], 0)
    ((views, bufs),) = good.chunks
    for byte in (24, 28, 16):  # row 1: its buffer index, its offset, its length
        bad = views.copy()
        bad[byte : byte + 4] = np.frombuffer((2**31).to_bytes(4, "little"), np.uint8)
        with pytest.raises(CoreError, match="row 1"):
            core.encode_str(core.StringViews(((bad, bufs),)))
        with pytest.raises(CoreError, match="row 1"):
            core.check_id_text(core.StringViews(((bad, bufs),)))
    with pytest.raises(CoreError, match="16 bytes per row"):
        core.encode_str(core.StringViews(((views[:-1], bufs),)))


# ---------------------------------------------------------------------------------- k-core
def kcore_reference(users, items, k_user, k_item):
    keep = [True] * len(users)
    rounds = 0
    while True:
        uc, ic = {}, {}
        for u, i, k in zip(users, items, keep):
            if k:
                uc[u] = uc.get(u, 0) + 1
                ic[i] = ic.get(i, 0) + 1
        drop = [k and (uc[u] < k_user or ic[i] < k_item) for u, i, k in zip(users, items, keep)]
        if not any(drop):
            return keep, rounds
        keep = [k and not d for k, d in zip(keep, drop)]
        rounds += 1


@SETTINGS
@given(
    st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9)), max_size=120),
    st.integers(1, 6),
    st.integers(1, 6),
)
def test_kcore_matches_reference(pairs, k_user, k_item):
    users = np.array([p[0] for p in pairs], dtype=np.uint32)
    items = np.array([p[1] for p in pairs], dtype=np.uint32)
    r = core.kcore(users, items, 10, 10, k_user, k_item)
    keep, rounds = kcore_reference(users.tolist(), items.tolist(), k_user, k_item)
    assert r.keep.tolist() == keep
    assert r.rounds == rounds
    assert r.rows_dropped == keep.count(False)
    kept_users = sorted({u for u, k in zip(users.tolist(), keep) if k})
    assert r.n_users == len(kept_users)
    # The new codes are dense and keep the old order.
    assert [int(r.user_map[u]) for u in kept_users] == list(range(len(kept_users)))


def test_kcore_k_larger_than_every_count_empties_the_log():
    r = core.kcore(np.array([0, 0, 1], np.uint32), np.array([0, 1, 0], np.uint32), 2, 2, 100, 1)
    assert r.n_users == 0 and r.rows_dropped == 3


# ----------------------------------------------------------------------------------- split
def sort_reference(users, ts, n_users):
    order = sorted(range(len(users)), key=lambda r: (users[r], ts[r], r))
    counts = [0] * (n_users + 1)
    for u in users:
        counts[u + 1] += 1
    for u in range(n_users):
        counts[u + 1] += counts[u]
    return order, counts


logs = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 12)), min_size=1, max_size=80)


@SETTINGS
@given(logs)
def test_sort_by_user_time_is_stable(rows):
    users = np.array([r[0] for r in rows], np.uint32)
    ts = np.array([r[1] for r in rows], np.int64)
    order, offsets = core.sort_by_user_time(users, ts, 6)
    ref_order, ref_offsets = sort_reference(users.tolist(), ts.tolist(), 6)
    assert order.tolist() == ref_order
    assert offsets.tolist() == ref_offsets


def split_reference(lens_ts, q, target, valid, vq):
    """Plain reference of the global temporal split over per-user sorted timestamp lists."""
    all_ts = [t for ts in lens_ts for t in ts]
    thr = float(np.quantile(np.array(all_ts, dtype=np.float64), q))

    def targets(ts, lo, hi):
        cand = [p for p in range(len(ts)) if lo(ts[p]) and hi(ts[p]) and p >= 1]
        if not cand:
            return []
        return {"last": [cand[-1]], "first": [cand[0]], "all": cand}[target]

    test = [(u, p) for u, ts in enumerate(lens_ts) for p in targets(ts, lambda t: t >= thr, lambda t: True)]
    train_len = [sum(t < thr for t in ts) for ts in lens_ts]
    if valid == "none":
        return train_len, [], test
    if valid == "last_item":
        vt = [(u, n - 1) for u, n in enumerate(train_len) if n >= 2]
        return [n - 1 if n >= 2 else n for n in train_len], vt, test
    train_ts = [t for ts, n in zip(lens_ts, train_len) for t in ts[:n]]
    vthr = float(np.quantile(np.array(train_ts, dtype=np.float64), vq))
    vt = [
        (u, p) for u, ts in enumerate(lens_ts) for p in targets(ts[: train_len[u]], lambda t: t >= vthr, lambda t: True)
    ]
    fit = [sum(t < vthr for t in ts[:n]) for ts, n in zip(lens_ts, train_len)]
    return fit, vt, test


@SETTINGS
@given(
    st.lists(st.lists(st.integers(0, 30), max_size=8), min_size=1, max_size=8),
    st.sampled_from([0.2, 0.5, 0.8, 0.95]),
    st.sampled_from(["last", "first", "all"]),
    st.sampled_from(["time", "last_item", "none"]),
)
def test_global_temporal_split_matches_reference(per_user, q, target, valid):
    per_user = [sorted(ts) for ts in per_user]
    if not any(per_user):
        return
    offsets = np.cumsum([0] + [len(t) for t in per_user]).astype(np.int64)
    ts = np.array([t for u in per_user for t in u], np.int64)
    if valid == "time" and not any(t < np.quantile(ts.astype(float), q) for t in ts):
        with pytest.raises(ValueError, match="training part is empty"):
            core.global_temporal_split(offsets, ts, q, target, valid, 0.7)
        return
    fit, vt, test = split_reference(per_user, q, target, valid, 0.7)
    r = core.global_temporal_split(offsets, ts, q, target, valid, 0.7)
    assert r.train_end.tolist() == fit
    assert list(zip(r.test_users.tolist(), r.test_pos.tolist())) == test
    assert list(zip(r.valid_users.tolist(), r.valid_pos.tolist())) == vt
    # Nothing at or after the test threshold is in training, nor in a validation target.
    thr = r.test_threshold
    for u, ts_u in enumerate(per_user):
        assert all(t < thr for t in ts_u[: fit[u]])
    for u, p in vt:
        assert per_user[u][p] < thr


@pytest.mark.parametrize("span", [50, 10**9])
def test_the_validation_threshold_of_a_large_split_is_numpys(span):
    # From 65,536 training rows the validation quantile is tallied per user by binary searches
    # (each user's rows are in time order) against a sampled bracket: checked against numpy.
    rng = np.random.default_rng(span)
    per_user = [sorted(rng.integers(0, span, rng.integers(0, 12)).tolist()) for _ in range(20_000)]
    offsets = np.cumsum([0] + [len(t) for t in per_user]).astype(np.int64)
    ts = np.array([t for u in per_user for t in u], np.int64)
    r = core.global_temporal_split(offsets, ts, 0.9, "last", "time", 0.8)
    fit, vt, test = split_reference(per_user, 0.9, "last", "time", 0.8)
    train_before = [sum(t < r.test_threshold for t in u) for u in per_user]
    assert sum(train_before) > 65_536
    assert r.valid_threshold == float(
        np.quantile(ts[np.concatenate([np.arange(a, a + n) for a, n in zip(offsets[:-1], train_before)])], 0.8)
    )
    assert r.train_end.tolist() == fit
    assert list(zip(r.valid_users.tolist(), r.valid_pos.tolist())) == vt
    assert list(zip(r.test_users.tolist(), r.test_pos.tolist())) == test


def test_timestamps_out_of_time_order_within_a_user_are_refused():
    # The splits binary-search each user's rows; rows out of order would give a silently wrong split.
    with pytest.raises(ValueError, match=r"time order within each user.*user 1 has 8 at row 3 after 9 at row 2"):
        core.global_temporal_split(np.array([0, 2, 5]), np.array([1, 2, 9, 8, 7]), threshold=5.0)


def test_users_wholly_before_or_after_the_threshold():
    # user 0 entirely before, user 1 entirely after, user 2 straddles.
    per_user = [[1, 2, 3], [90, 91, 92], [4, 95]]
    offsets = np.array([0, 3, 6, 8], np.int64)
    ts = np.array([t for u in per_user for t in u], np.int64)
    r = core.global_temporal_split(offsets, ts, 0.5, "last", "none")
    assert r.train_end.tolist() == [3, 0, 1]
    # user 1's input is its own earlier test-period items; user 2's is its training item.
    assert list(zip(r.test_users.tolist(), r.test_pos.tolist())) == [(1, 2), (2, 1)]


def test_leave_one_out_matches_definition():
    lens = [1, 2, 3, 6]
    offsets = np.cumsum([0] + lens).astype(np.int64)
    r = core.leave_one_out_split(offsets)
    assert r.train_end.tolist() == [1, 1, 1, 4]
    assert list(zip(r.test_users.tolist(), r.test_pos.tolist())) == [(1, 1), (2, 2), (3, 5)]
    assert list(zip(r.valid_users.tolist(), r.valid_pos.tolist())) == [(2, 1), (3, 4)]


def test_bad_quantile_is_rejected():
    with pytest.raises(ValueError, match="quantile"):
        core.global_temporal_split(np.array([0, 1], np.int64), np.array([5], np.int64), 1.5)


# ------------------------------------------------------------------------------- sequences
def windows_reference(train_end, length, stride, min_len):
    out = []
    for u, n in enumerate(train_end):
        if n < max(min_len, 1):
            continue
        e = n
        while True:
            out.append((u, e))
            if e <= length or e - stride < max(min_len, 1):
                break
            e -= stride
    return out


@SETTINGS
@given(st.lists(st.integers(0, 40), max_size=10), st.integers(1, 12), st.integers(1, 12), st.integers(1, 3))
def test_training_windows_match_reference(train_end, length, stride, min_len):
    u, e = core.training_windows(np.array(train_end, np.int64), length, stride, min_len)
    assert list(zip(u.tolist(), e.tolist())) == windows_reference(train_end, length, stride, min_len)


@SETTINGS
@given(st.lists(st.integers(2, 40), min_size=1, max_size=6), st.integers(2, 9))
def test_causal_windows_cover_every_transition_once(train_end, length):
    """With stride = length - 1, next-item targets tile each prefix exactly once."""
    u, e = core.training_windows(np.array(train_end, np.int64), length, length - 1, 2)
    covered = {}
    for user, end in zip(u.tolist(), e.tolist()):
        start = max(0, end - length)
        for p in range(start + 1, end):
            covered[(user, p)] = covered.get((user, p), 0) + 1
    expected = {(user, p): 1 for user, n in enumerate(train_end) for p in range(1, n)}
    assert covered == expected


@SETTINGS
@given(st.lists(st.lists(st.integers(1, 50), max_size=12), min_size=1, max_size=6), st.integers(1, 8), st.data())
def test_gather_and_seen_match_reference(per_user, length, data):
    offsets = np.cumsum([0] + [len(x) for x in per_user]).astype(np.int64)
    items = np.array([i for x in per_user for i in x], np.int64)
    rows = data.draw(st.lists(st.integers(0, len(per_user) - 1), max_size=10))
    ends = [data.draw(st.integers(0, len(per_user[u]))) for u in rows]
    users = np.array(rows, np.int64)
    ends_a = np.array(ends, np.int64)
    w = core.gather_windows(offsets, items, users, ends_a, length)
    assert w.shape == (len(rows), length)
    for j, (u, e) in enumerate(zip(rows, ends)):
        hist = per_user[u][:e][-length:]
        assert w[j].tolist() == [0] * (length - len(hist)) + hist
    so, si = core.seen_items(offsets, items, users, ends_a)
    for j, (u, e) in enumerate(zip(rows, ends)):
        assert si[so[j] : so[j + 1]].tolist() == sorted(set(per_user[u][:e]))


def test_permutation_seeded():
    p = core.permutation(100, 5)
    assert sorted(p.tolist()) == list(range(100))
    assert p.tolist() == core.permutation(100, 5).tolist()
    assert p.tolist() != core.permutation(100, 6).tolist()


# --------------------------------------------------------------------------------- metrics
def metrics_reference(scores, ks, truth, seen, min_item):
    """Plain numpy: lexsort by (-score, id), NaN lowest, seen and < min_item removed."""
    out = {}
    ranked = []
    for r in range(scores.shape[0]):
        s = scores[r].astype(np.float64)
        key = np.where(np.isnan(s), -np.inf, s)
        nan_rank = np.isnan(s).astype(int)  # NaN after -inf
        ids = np.arange(len(s))
        order = np.lexsort((ids, nan_rank, -key))
        excl = set(seen[r]) | set(range(min_item))
        ranked.append([int(i) for i in order if int(i) not in excl])
    for k in ks:
        for name in ("ndcg", "recall", "hit_rate", "mrr"):
            out[f"{name}@{k}"] = []
        for r in range(scores.shape[0]):
            t = set(truth[r])
            top = ranked[r][:k]
            if not t:
                for name in ("ndcg", "recall", "hit_rate", "mrr"):
                    out[f"{name}@{k}"].append(math.nan)
                continue
            hits = [i for i, x in enumerate(top) if x in t]
            dcg = sum(1 / math.log2(i + 2) for i in hits)
            idcg = sum(1 / math.log2(i + 2) for i in range(min(len(t), k)))
            out[f"ndcg@{k}"].append(dcg / idcg)
            out[f"recall@{k}"].append(len(hits) / len(t))
            out[f"hit_rate@{k}"].append(float(bool(hits)))
            out[f"mrr@{k}"].append(1 / (hits[0] + 1) if hits else 0.0)
    return out, ranked


def csr(rows):
    offsets = np.cumsum([0] + [len(r) for r in rows]).astype(np.int64)
    return offsets, np.array([x for r in rows for x in r], np.int64)


@SETTINGS
@given(st.integers(1, 6), st.integers(1, 15), st.data())
def test_topk_metrics_match_reference(n_rows, n_items, data):
    # Scores from a small set of values so that ties are frequent; some NaN and -inf.
    vals = st.sampled_from([0.0, -0.0, 1.0, 2.0, 2.0, -1.0, float("nan"), float("-inf"), 0.5])
    scores = np.array([[data.draw(vals) for _ in range(n_items)] for _ in range(n_rows)], np.float32)
    truth = [data.draw(st.lists(st.integers(0, n_items - 1), max_size=3)) for _ in range(n_rows)]
    seen = [data.draw(st.lists(st.integers(0, n_items - 1), max_size=4)) for _ in range(n_rows)]
    ks = sorted(set(data.draw(st.lists(st.integers(1, 8), min_size=1, max_size=3))))
    min_item = data.draw(st.integers(0, 1))
    to, ti = csr(truth)
    so, si = csr(seen)
    got = core.topk_metrics(scores, ks, to, ti, so, si, min_item=min_item)
    want, ranked = metrics_reference(scores, ks, truth, seen, min_item)
    for key, ref in want.items():
        np.testing.assert_allclose(got[key], np.array(ref), rtol=1e-12, equal_nan=True, err_msg=key)
    kmax = max(ks)
    for r in range(n_rows):
        top = ranked[r][:kmax]
        assert got.topk[r].tolist() == top + [-1] * (kmax - len(top))
    from_ids = core.topk_metrics_from_ids(np.ascontiguousarray(got.topk), ks, to, ti)
    for key in want:
        np.testing.assert_allclose(from_ids[key], got[key], equal_nan=True)


def test_topk_metrics_hand_case():
    scores = np.array([[0.0, 0.9, 0.1, 0.9, 0.5]], np.float32)
    # ranking over items >= 1: 1 (0.9, lower id wins the tie), 3, 4, 2
    r = core.topk_metrics(scores, [2], np.array([0, 1], np.int64), np.array([4], np.int64), min_item=1)
    assert r.topk.tolist() == [[1, 3]]
    assert r["hit_rate@2"][0] == 0.0
    r = core.topk_metrics(scores, [3], np.array([0, 1], np.int64), np.array([4], np.int64), min_item=1)
    assert r["ndcg@3"][0] == pytest.approx(1 / math.log2(4))
    assert r["mrr@3"][0] == pytest.approx(1 / 3)


def test_metrics_errors_name_the_argument():
    with pytest.raises(ValueError, match="ground truth"):
        core.topk_metrics(np.zeros((2, 3), np.float32), [1], np.array([0, 1], np.int64), np.array([1], np.int64))
    with pytest.raises(ValueError, match="C-contiguous"):
        core.topk_metrics(np.zeros((3, 2), np.float32).T, [1], np.array([0, 0, 0], np.int64), np.zeros(0, np.int64))


def test_absurd_sizes_are_refused_with_an_error_not_an_abort():
    # Each of these once aborted the interpreter (allocation failure) or ran for ever; now the
    # core refuses them with a CoreError (a ValueError) naming the argument.
    from seqdistill.errors import CoreError

    one = np.zeros(1, np.uint32)
    cases = [
        (lambda: core.kcore(one, one, 10**15, 1, 1, 1), "n_users"),
        (lambda: core.kcore(one, one, 1, 2**62, 1, 1), "n_items"),
        (lambda: core.permutation(10**15, 0), "permutation"),
        (lambda: core.permutation(2**64 - 1, 0), "int64"),
        (lambda: core.training_windows(np.array([10**15], np.int64), 2, 1), "training windows"),
        (
            lambda: core.gather_windows(
                np.array([0, 3], np.int64), np.array([1, 2, 3], np.int64), np.array([0]), np.array([2]), 10**15
            ),
            "windows",
        ),
    ]
    for call, name in cases:
        with pytest.raises(CoreError, match=name):
            call()
    # The same functions still work at ordinary sizes.
    assert sorted(core.permutation(5, 0).tolist()) == [0, 1, 2, 3, 4]
    assert core.kcore(one, one, 3, 2, 1, 1).keep.tolist() == [True]


def test_huge_pages_follow_the_variable_and_change_no_result():
    """``SEQDISTILL_HUGE_PAGES`` decides whether the core's buffers ask for huge pages (read once
    per process); the prepared log is the same either way."""
    import os
    import subprocess
    import sys

    script = (
        "import numpy as np, polars as pl, seqdistill as sd\n"
        "from seqdistill import core\n"
        "rng = np.random.default_rng(3); n = 600_000\n"
        "df = pl.DataFrame({'user_id': rng.integers(0, 20_000, n), 'item_id': rng.integers(0, 3_000, n),"
        " 'timestamp': rng.integers(0, 10**9, n)})\n"
        "ds = sd.prepare(df, k_core=5, split=sd.SplitConfig(valid='none'))\n"
        "print(core.huge_pages(), int(ds.items.sum() % 1_000_003), int(ds.timestamps[::97].sum() % 1_000_003))\n"
    )
    out = {}
    for value in ("0", "1"):
        env = {**os.environ, "SEQDISTILL_HUGE_PAGES": value}
        p = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        out[value] = p.stdout.split()
    assert out["0"][0] == "False" and out["1"][0] == "True"
    assert out["0"][1:] == out["1"][1:]
