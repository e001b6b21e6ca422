//! pyo3 bindings: argument checks, numpy in and out (no copies where the layout allows), and the
//! GIL released while the Rust functions run.

use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::kcore as peel;
use crate::{ids, metrics, sequences, split};

type Arr1<'py, T> = Bound<'py, PyArray1<T>>;

fn err(msg: String) -> PyErr {
    PyValueError::new_err(msg)
}

fn slice<'a, T: numpy::Element>(a: &'a PyReadonlyArray1<'_, T>, name: &str) -> PyResult<&'a [T]> {
    a.as_slice().map_err(|_| err(format!("{name} must be a C-contiguous 1-d array")))
}

/// Encode int64 ids: returns (codes uint32, uniques int64 sorted).
#[pyfunction]
fn encode_i64<'py>(py: Python<'py>, values: PyReadonlyArray1<'py, i64>) -> PyResult<(Arr1<'py, u32>, Arr1<'py, i64>)> {
    let v = slice(&values, "values")?;
    let (codes, uniques) = py.detach(|| ids::encode_i64(v));
    Ok((codes.into_pyarray(py), uniques.into_pyarray(py)))
}

/// Encode UTF-8 strings in Arrow layout: returns (codes uint32, first_rows uint64 in sorted order).
#[pyfunction]
fn encode_str<'py>(py: Python<'py>, offsets: PyReadonlyArray1<'py, i64>, data: PyReadonlyArray1<'py, u8>) -> PyResult<(Arr1<'py, u32>, Arr1<'py, u64>)> {
    let o = slice(&offsets, "offsets")?;
    let d = slice(&data, "data")?;
    let (codes, first) = py.detach(|| ids::encode_str(o, d)).map_err(err)?;
    Ok((codes.into_pyarray(py), first.into_pyarray(py)))
}

/// Iterative k-core. Returns a dict: keep (bool per row), user_map / item_map (old code → new
/// dense code, -1 when dropped), n_users, n_items, rounds, rows_dropped.
#[pyfunction]
#[pyo3(signature = (users, items, n_users, n_items, k_user, k_item))]
fn kcore<'py>(
    py: Python<'py>,
    users: PyReadonlyArray1<'py, u32>,
    items: PyReadonlyArray1<'py, u32>,
    n_users: usize,
    n_items: usize,
    k_user: u32,
    k_item: u32,
) -> PyResult<Bound<'py, PyDict>> {
    let u = slice(&users, "users")?;
    let i = slice(&items, "items")?;
    let r = py.detach(|| peel::kcore(u, i, n_users, n_items, k_user, k_item)).map_err(err)?;
    let (umap, nu) = ids::compact_map(&r.keep_users);
    let (imap, ni) = ids::compact_map(&r.keep_items);
    let to_i64 = |m: Vec<u32>| -> Vec<i64> { m.into_iter().map(|c| if c == u32::MAX { -1 } else { c as i64 }).collect() };
    let d = PyDict::new(py);
    d.set_item("keep", r.keep.into_pyarray(py))?;
    d.set_item("user_map", to_i64(umap).into_pyarray(py))?;
    d.set_item("item_map", to_i64(imap).into_pyarray(py))?;
    d.set_item("n_users", nu)?;
    d.set_item("n_items", ni)?;
    d.set_item("rounds", r.rounds)?;
    d.set_item("rows_dropped", r.rows_dropped)?;
    Ok(d)
}

/// Stable chronological order per user: returns (order uint32, offsets int64).
#[pyfunction]
fn sort_by_user_time<'py>(py: Python<'py>, users: PyReadonlyArray1<'py, u32>, timestamps: PyReadonlyArray1<'py, i64>, n_users: usize) -> PyResult<(Arr1<'py, u32>, Arr1<'py, i64>)> {
    let u = slice(&users, "users")?;
    let t = slice(&timestamps, "timestamps")?;
    let (order, offsets) = py.detach(|| split::sort_by_user_time(u, t, n_users)).map_err(err)?;
    Ok((order.into_pyarray(py), offsets.into_pyarray(py)))
}

fn split_dict<'py>(py: Python<'py>, s: split::Split) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("train_end", s.train_end.into_pyarray(py))?;
    d.set_item("valid_users", s.valid_users.into_pyarray(py))?;
    d.set_item("valid_pos", s.valid_pos.into_pyarray(py))?;
    d.set_item("test_users", s.test_users.into_pyarray(py))?;
    d.set_item("test_pos", s.test_pos.into_pyarray(py))?;
    d.set_item("test_threshold", s.test_threshold)?;
    d.set_item("valid_threshold", s.valid_threshold)?;
    Ok(d)
}

fn parse_target(target: &str) -> PyResult<split::Target> {
    match target {
        "last" => Ok(split::Target::Last),
        "first" => Ok(split::Target::First),
        "all" => Ok(split::Target::All),
        other => Err(err(format!("target must be 'last', 'first' or 'all', got {other:?}"))),
    }
}

fn parse_valid(valid: &str, valid_quantile: f64) -> PyResult<split::Valid> {
    match valid {
        "time" => Ok(split::Valid::Time(valid_quantile)),
        "last_item" => Ok(split::Valid::LastItem),
        "none" => Ok(split::Valid::None),
        other => Err(err(format!("valid must be 'time', 'last_item' or 'none', got {other:?}"))),
    }
}

/// Global temporal split over the chronological CSR. `threshold` overrides the quantile.
#[pyfunction]
#[pyo3(signature = (offsets, timestamps, quantile=0.8, target="last", valid="time", valid_quantile=0.8, threshold=None))]
#[allow(clippy::too_many_arguments)]
fn global_temporal_split<'py>(
    py: Python<'py>,
    offsets: PyReadonlyArray1<'py, i64>,
    timestamps: PyReadonlyArray1<'py, i64>,
    quantile: f64,
    target: &str,
    valid: &str,
    valid_quantile: f64,
    threshold: Option<f64>,
) -> PyResult<Bound<'py, PyDict>> {
    let o = slice(&offsets, "offsets")?;
    let t = slice(&timestamps, "timestamps")?;
    let target = parse_target(target)?;
    let valid = parse_valid(valid, valid_quantile)?;
    let s = py
        .detach(|| match threshold {
            Some(th) => split::threshold_split(o, t, th, target, valid),
            None => split::global_temporal(o, t, quantile, target, valid),
        })
        .map_err(err)?;
    split_dict(py, s)
}

/// Leave-one-out split over the chronological CSR offsets.
#[pyfunction]
fn leave_one_out_split<'py>(py: Python<'py>, offsets: PyReadonlyArray1<'py, i64>) -> PyResult<Bound<'py, PyDict>> {
    let o = slice(&offsets, "offsets")?;
    let s = py.detach(|| split::leave_one_out(o));
    split_dict(py, s)
}

/// Sliding training windows: returns (users, ends) int64.
#[pyfunction]
#[pyo3(signature = (train_end, length, stride, min_len=2))]
fn training_windows<'py>(py: Python<'py>, train_end: PyReadonlyArray1<'py, i64>, length: usize, stride: usize, min_len: usize) -> PyResult<(Arr1<'py, i64>, Arr1<'py, i64>)> {
    let t = slice(&train_end, "train_end")?;
    let (u, e) = py.detach(|| sequences::training_windows(t, length, stride, min_len)).map_err(err)?;
    Ok((u.into_pyarray(py), e.into_pyarray(py)))
}

/// Left-padded windows `[rows, length]` int64.
#[pyfunction]
fn gather_windows<'py>(
    py: Python<'py>,
    offsets: PyReadonlyArray1<'py, i64>,
    items: PyReadonlyArray1<'py, i64>,
    users: PyReadonlyArray1<'py, i64>,
    ends: PyReadonlyArray1<'py, i64>,
    length: usize,
) -> PyResult<Bound<'py, PyArray2<i64>>> {
    let (o, i, u, e) = (slice(&offsets, "offsets")?, slice(&items, "items")?, slice(&users, "users")?, slice(&ends, "ends")?);
    let rows = u.len();
    let out = py.detach(|| sequences::gather_windows(o, i, u, e, length)).map_err(err)?;
    out.into_pyarray(py).reshape([rows, length])
}

/// A seeded permutation of 0..n (int64).
#[pyfunction]
fn permutation(py: Python<'_>, n: usize, seed: u64) -> Arr1<'_, i64> {
    py.detach(|| sequences::permutation(n, seed)).into_pyarray(py)
}

/// Distinct items of each row's input as CSR: returns (offsets, items) int64.
#[pyfunction]
fn seen_items<'py>(
    py: Python<'py>,
    offsets: PyReadonlyArray1<'py, i64>,
    items: PyReadonlyArray1<'py, i64>,
    users: PyReadonlyArray1<'py, i64>,
    ends: PyReadonlyArray1<'py, i64>,
) -> PyResult<(Arr1<'py, i64>, Arr1<'py, i64>)> {
    let (o, i, u, e) = (slice(&offsets, "offsets")?, slice(&items, "items")?, slice(&users, "users")?, slice(&ends, "ends")?);
    let (so, si) = py.detach(|| sequences::seen_items(o, i, u, e)).map_err(err)?;
    Ok((so.into_pyarray(py), si.into_pyarray(py)))
}

const METRIC_NAMES: [&str; 4] = ["ndcg", "recall", "hit_rate", "mrr"];

fn metrics_dict<'py>(py: Python<'py>, values: Vec<Vec<Vec<f64>>>, ks: &[usize]) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (mi, per_k) in values.into_iter().enumerate() {
        for (ci, v) in per_k.into_iter().enumerate() {
            d.set_item(format!("{}@{}", METRIC_NAMES[mi], ks[ci]), v.into_pyarray(py))?;
        }
    }
    Ok(d)
}

/// Top-k ids and per-row NDCG/Recall/HitRate/MRR at each k from a float32 score matrix.
#[pyfunction]
#[pyo3(signature = (scores, ks, gt_offsets, gt_items, seen_offsets=None, seen_items=None, min_item=0))]
#[allow(clippy::too_many_arguments)]
fn topk_metrics<'py>(
    py: Python<'py>,
    scores: PyReadonlyArray2<'py, f32>,
    ks: Vec<usize>,
    gt_offsets: PyReadonlyArray1<'py, i64>,
    gt_items: PyReadonlyArray1<'py, i64>,
    seen_offsets: Option<PyReadonlyArray1<'py, i64>>,
    seen_items: Option<PyReadonlyArray1<'py, i64>>,
    min_item: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let n_items = scores.shape()[1];
    if !scores.is_c_contiguous() {
        return Err(err("scores must be a C-contiguous float32 matrix".into()));
    }
    let s = scores.as_slice().map_err(|_| err("scores must be a C-contiguous float32 matrix".into()))?;
    let truth = metrics::Csr { offsets: slice(&gt_offsets, "gt_offsets")?, values: slice(&gt_items, "gt_items")? };
    let seen = match (&seen_offsets, &seen_items) {
        (Some(o), Some(v)) => Some(metrics::Csr { offsets: slice(o, "seen_offsets")?, values: slice(v, "seen_items")? }),
        (None, None) => None,
        _ => return Err(err("give both seen_offsets and seen_items, or neither".into())),
    };
    let out = py.detach(|| metrics::topk_metrics(s, n_items, &ks, &truth, seen.as_ref(), min_item)).map_err(err)?;
    let rows = out.topk.len() / out.max_k.max(1);
    let max_k = out.max_k;
    let d = metrics_dict(py, out.values, &ks)?;
    d.set_item("topk", out.topk.into_pyarray(py).reshape([rows, max_k])?)?;
    Ok(d)
}

/// Metrics from precomputed top-k ids `[rows, k]` int64 (−1 = empty slot).
#[pyfunction]
fn topk_metrics_from_ids<'py>(py: Python<'py>, topk: PyReadonlyArray2<'py, i64>, ks: Vec<usize>, gt_offsets: PyReadonlyArray1<'py, i64>, gt_items: PyReadonlyArray1<'py, i64>) -> PyResult<Bound<'py, PyDict>> {
    let k = topk.shape()[1];
    if !topk.is_c_contiguous() {
        return Err(err("topk must be a C-contiguous int64 matrix".into()));
    }
    let t = topk.as_slice().map_err(|_| err("topk must be a C-contiguous int64 matrix".into()))?;
    let truth = metrics::Csr { offsets: slice(&gt_offsets, "gt_offsets")?, values: slice(&gt_items, "gt_items")? };
    let values = py.detach(|| metrics::metrics_from_ids(t, k, &ks, &truth)).map_err(err)?;
    metrics_dict(py, values, &ks)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(encode_i64, m)?)?;
    m.add_function(wrap_pyfunction!(encode_str, m)?)?;
    m.add_function(wrap_pyfunction!(kcore, m)?)?;
    m.add_function(wrap_pyfunction!(sort_by_user_time, m)?)?;
    m.add_function(wrap_pyfunction!(global_temporal_split, m)?)?;
    m.add_function(wrap_pyfunction!(leave_one_out_split, m)?)?;
    m.add_function(wrap_pyfunction!(training_windows, m)?)?;
    m.add_function(wrap_pyfunction!(gather_windows, m)?)?;
    m.add_function(wrap_pyfunction!(permutation, m)?)?;
    m.add_function(wrap_pyfunction!(seen_items, m)?)?;
    m.add_function(wrap_pyfunction!(topk_metrics, m)?)?;
    m.add_function(wrap_pyfunction!(topk_metrics_from_ids, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
