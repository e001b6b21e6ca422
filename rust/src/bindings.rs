//! pyo3 bindings: argument checks, numpy in and out (no copies where the layout allows), typed
//! result classes, the GIL released while the Rust functions run, and the one place where
//! [`CoreError`] becomes a Python exception (a class of `seqdistill.errors`).

use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::audit::Audit;
use crate::column::Column;
use crate::error::CoreError;
use crate::ids::{Ids, Uniques};
use crate::kcore::{self as peel, Filter, Removed};
use crate::pipeline::{self, SplitSpec};
use crate::split::{Target, Valid};
use crate::strings::{OffsetsStr, ViewChunk, ViewsStr};
use crate::{ids, metrics, parquet_log, sequences, split, text};

/// The Python classes of `seqdistill.errors`, imported when first raised.
mod py_errors {
    pyo3::import_exception!(seqdistill.errors, CoreError);
    pyo3::import_exception!(seqdistill.errors, DataError);
}

impl From<CoreError> for PyErr {
    fn from(e: CoreError) -> PyErr {
        if e.is_data() {
            py_errors::DataError::new_err(e.to_string())
        } else {
            py_errors::CoreError::new_err(e.to_string())
        }
    }
}

type Arr1<'py, T> = Bound<'py, PyArray1<T>>;
type Out1<T> = Py<PyArray1<T>>;

fn slice<'a, T: numpy::Element>(a: &'a PyReadonlyArray1<'_, T>, name: &'static str) -> Result<&'a [T], CoreError> {
    a.as_slice().map_err(|_| CoreError::invalid(name, "must be a C-contiguous 1-d array"))
}

fn matrix<'a, T: numpy::Element>(a: &'a PyReadonlyArray2<'_, T>, name: &'static str) -> Result<&'a [T], CoreError> {
    if !a.is_c_contiguous() {
        return Err(CoreError::invalid(name, "must be a C-contiguous matrix"));
    }
    a.as_slice().map_err(|_| CoreError::invalid(name, "must be a C-contiguous matrix"))
}

fn arr<T: numpy::Element>(py: Python<'_>, v: Vec<T>) -> Out1<T> {
    v.into_pyarray(py).unbind()
}

// ------------------------------------------------------------------------------------ results

/// What each round of a filter removed, one entry per round: the users and items whose last row
/// went in it, and its rows (those whose user or item went in it first).
#[pyclass(module = "seqdistill._core", frozen, get_all)]
pub struct KCoreRounds {
    users: Out1<i64>,
    items: Out1<i64>,
    rows: Out1<i64>,
}

#[pymethods]
impl KCoreRounds {
    fn __len__(&self, py: Python<'_>) -> usize {
        self.rows.bind(py).len()
    }
}

fn rounds(py: Python<'_>, removed: &[Removed]) -> PyResult<Py<KCoreRounds>> {
    let col = |f: fn(&Removed) -> usize| arr(py, removed.iter().map(|r| f(r) as i64).collect());
    Py::new(py, KCoreRounds { users: col(|r| r.users), items: col(|r| r.items), rows: col(|r| r.rows) })
}

/// Counts of the split audit (see `rust/src/audit.rs`): users and rows per part (targets for
/// valid and test), training rows at or after each cutoff (None without that cutoff), test users
/// without a training row, test targets whose item has no training row and those items.
#[pyclass(module = "seqdistill._core", frozen, get_all)]
pub struct AuditCounts {
    train_users: usize,
    train_rows: usize,
    valid_users: usize,
    valid_rows: usize,
    test_users: usize,
    test_rows: usize,
    train_at_or_after_test_cutoff: Option<usize>,
    train_at_or_after_valid_cutoff: Option<usize>,
    test_users_without_train: usize,
    test_targets_unseen_item: usize,
    test_items_unseen: usize,
}

impl From<Audit> for AuditCounts {
    fn from(a: Audit) -> Self {
        AuditCounts {
            train_users: a.train.users,
            train_rows: a.train.rows,
            valid_users: a.valid.users,
            valid_rows: a.valid.rows,
            test_users: a.test.users,
            test_rows: a.test.rows,
            train_at_or_after_test_cutoff: a.train_at_or_after_test_cutoff,
            train_at_or_after_valid_cutoff: a.train_at_or_after_valid_cutoff,
            test_users_without_train: a.test_users_without_train,
            test_targets_unseen_item: a.test_targets_unseen_item,
            test_items_unseen: a.test_items_unseen,
        }
    }
}

/// Outcome of the iterative k-core.
#[pyclass(module = "seqdistill._core", frozen, get_all)]
pub struct KCoreResult {
    /// Per row: survives the filter.
    keep: Out1<bool>,
    /// Old user code → new dense code, -1 when dropped.
    user_map: Out1<i64>,
    item_map: Out1<i64>,
    n_users: usize,
    n_items: usize,
    rounds: u32,
    rows_dropped: usize,
    removed: Py<KCoreRounds>,
}

/// A split over the chronological CSR: per-user training prefix lengths and `(user, position)`
/// targets. Thresholds are NaN where the split has none.
#[pyclass(module = "seqdistill._core", frozen, get_all)]
pub struct SplitResult {
    train_end: Out1<i64>,
    valid_users: Out1<i64>,
    valid_pos: Out1<i64>,
    test_users: Out1<i64>,
    test_pos: Out1<i64>,
    test_threshold: f64,
    valid_threshold: f64,
}

impl SplitResult {
    fn new(py: Python<'_>, s: split::Split) -> Self {
        SplitResult {
            train_end: arr(py, s.train_end),
            valid_users: arr(py, s.valid_users),
            valid_pos: arr(py, s.valid_pos),
            test_users: arr(py, s.test_users),
            test_pos: arr(py, s.test_pos),
            test_threshold: s.test_threshold,
            valid_threshold: s.valid_threshold,
        }
    }
}

/// The prepared log of `prepare_log`: surviving raw ids (integers, the first row of each string
/// in the caller's column, or the strings themselves), the chronological CSR, the split, and the k-core counts.
#[pyclass(module = "seqdistill._core", frozen, get_all)]
pub struct PreparedLog {
    user_values: Option<Out1<i64>>,
    user_first_rows: Option<Out1<u64>>,
    /// String ids read by the core itself (`prepare_parquet`): Arrow `large_string` offsets and bytes.
    user_text: Option<(Out1<i64>, Out1<u8>)>,
    item_values: Option<Out1<i64>>,
    item_first_rows: Option<Out1<u64>>,
    item_text: Option<(Out1<i64>, Out1<u8>)>,
    offsets: Out1<i64>,
    items: Out1<i64>,
    timestamps: Out1<i64>,
    ratings: Option<Out1<f32>>,
    split: Option<Py<SplitResult>>,
    users_before: usize,
    items_before: usize,
    kcore_rounds: u32,
    rows_dropped: usize,
    /// What each round of the filter removed.
    kcore_removed: Py<KCoreRounds>,
    /// The split audit; None with the split.
    audit: Option<Py<AuditCounts>>,
    /// For string ids handed in (not read by the core): the id text check of their distinct
    /// values before the filter (rows: first rows; see `check_id_text`), which the caller's id
    /// checks use in place of a pass over every row.
    user_id_check: Option<Py<IdTextCheck>>,
    item_id_check: Option<Py<IdTextCheck>>,
    /// `(stage, seconds)` in pipeline order.
    stages: Vec<(String, f64)>,
}

/// Per-row metrics of a block of rows at each k, and each row's top `max(ks)` ids (-1 where
/// fewer candidates). `result["ndcg@10"]` is the per-row NDCG@10.
#[pyclass(module = "seqdistill._core", frozen)]
pub struct TopkMetrics {
    ks: Vec<usize>,
    #[pyo3(get)]
    topk: Option<Py<PyArray2<i64>>>,
    #[pyo3(get)]
    ndcg: Py<PyArray2<f64>>,
    #[pyo3(get)]
    recall: Py<PyArray2<f64>>,
    #[pyo3(get)]
    hit_rate: Py<PyArray2<f64>>,
    #[pyo3(get)]
    mrr: Py<PyArray2<f64>>,
}

const METRIC_NAMES: [&str; 4] = ["ndcg", "recall", "hit_rate", "mrr"];

#[pymethods]
impl TopkMetrics {
    /// A record assembled by the caller (e.g. from blocks); each metric is `[len(ks), rows]`.
    #[new]
    #[pyo3(signature = (*, ks, topk, ndcg, recall, hit_rate, mrr))]
    fn new(
        ks: Vec<usize>,
        topk: Option<Py<PyArray2<i64>>>,
        ndcg: Py<PyArray2<f64>>,
        recall: Py<PyArray2<f64>>,
        hit_rate: Py<PyArray2<f64>>,
        mrr: Py<PyArray2<f64>>,
    ) -> Self {
        TopkMetrics { ks, topk, ndcg, recall, hit_rate, mrr }
    }

    #[getter]
    fn ks<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.ks)
    }

    /// The metric names, e.g. `["ndcg@5", "ndcg@10", ...]`.
    fn keys(&self) -> Vec<String> {
        METRIC_NAMES.iter().flat_map(|m| self.ks.iter().map(move |k| format!("{m}@{k}"))).collect()
    }

    fn __getitem__<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Bound<'py, PyAny>> {
        let found = key.split_once('@').and_then(|(m, k)| {
            let mi = METRIC_NAMES.iter().position(|&n| n == m)?;
            let ki = self.ks.iter().position(|&x| k.parse::<usize>().ok() == Some(x))?;
            Some((mi, ki))
        });
        let Some((mi, ki)) = found else {
            return Err(pyo3::exceptions::PyKeyError::new_err(format!("{key:?}: expected one of {:?}", self.keys())));
        };
        let m = [&self.ndcg, &self.recall, &self.hit_rate, &self.mrr][mi];
        m.bind(py).as_any().get_item(ki)
    }
}

fn topk_result(
    py: Python<'_>,
    values: Vec<Vec<Vec<f64>>>,
    ks: &[usize],
    topk: Bound<'_, PyArray2<i64>>,
    rows: usize,
) -> PyResult<TopkMetrics> {
    let mut mats = Vec::with_capacity(4);
    for per_k in values {
        let flat: Vec<f64> = per_k.into_iter().flatten().collect();
        mats.push(flat.into_pyarray(py).reshape([ks.len(), rows])?.unbind());
    }
    let [ndcg, recall, hit_rate, mrr]: [Py<PyArray2<f64>>; 4] =
        mats.try_into().map_err(|_| CoreError::invalid("metrics", "expected four metrics"))?;
    Ok(TopkMetrics { ks: ks.to_vec(), topk: Some(topk.unbind()), ndcg, recall, hit_rate, mrr })
}

// ------------------------------------------------------------------------------------ ids

/// Encode int64 ids: returns (codes uint32, uniques int64 sorted).
#[pyfunction]
fn encode_i64<'py>(py: Python<'py>, values: PyReadonlyArray1<'py, i64>) -> PyResult<(Arr1<'py, u32>, Arr1<'py, i64>)> {
    let v = slice(&values, "values")?;
    let (codes, uniques) = py.detach(|| ids::encode_i64(v));
    Ok((codes.into_pyarray(py), uniques.into_pyarray(py)))
}

/// Encode UTF-8 strings in Arrow layout: returns (codes uint32, first_rows uint64 in sorted order).
#[pyfunction]
fn encode_str<'py>(
    py: Python<'py>,
    offsets: PyReadonlyArray1<'py, i64>,
    data: PyReadonlyArray1<'py, u8>,
) -> PyResult<(Arr1<'py, u32>, Arr1<'py, u64>)> {
    let o = slice(&offsets, "offsets")?;
    let d = slice(&data, "data")?;
    let (codes, first) = py.detach(|| ids::encode_str(o, d))?;
    Ok((codes.into_pyarray(py), first.into_pyarray(py)))
}

/// `encode_str` for a `string_view` column (`StringViews`, read in place).
#[pyfunction]
fn encode_str_views<'py>(py: Python<'py>, views: ViewsArg<'py>) -> PyResult<(Arr1<'py, u32>, Arr1<'py, u64>)> {
    let col = views.column()?;
    let (codes, first, _) = py.detach(|| ids::encode_column(&col))?;
    Ok((codes.into_pyarray(py), first.into_pyarray(py)))
}

/// A `string_view` (Utf8View) column: an object with `chunks`, a sequence of
/// `(views uint8 [16 * rows], data buffers: sequence of uint8 arrays)` (Python: `core.StringViews`).
#[derive(FromPyObject)]
struct ViewsArg<'py> {
    #[pyo3(attribute("chunks"))]
    chunks: Vec<(PyReadonlyArray1<'py, u8>, Vec<PyReadonlyArray1<'py, u8>>)>,
}

impl ViewsArg<'_> {
    fn column(&self) -> Result<ViewsStr<'_>, CoreError> {
        let chunks = self
            .chunks
            .iter()
            .map(|(v, bufs)| {
                let (views, rest) = slice(v, "views")?.as_chunks::<16>();
                if !rest.is_empty() {
                    return Err(CoreError::invalid("views", "must hold 16 bytes per row"));
                }
                let buffers = bufs.iter().map(|b| slice(b, "view buffers")).collect::<Result<Vec<_>, _>>()?;
                Ok(ViewChunk { views, buffers })
            })
            .collect::<Result<Vec<_>, CoreError>>()?;
        Ok(ViewsStr::new(chunks))
    }
}

/// What one pass over a string id column found (rust/src/text.rs): values are seen trimmed of
/// whitespace; rows count from 0.
#[pyclass(module = "seqdistill._core", frozen, get_all)]
pub struct IdTextCheck {
    first_empty: Option<usize>,
    first_control: Option<usize>,
    first_nan_like: Option<usize>,
    padded: bool,
    int_like: bool,
    non_ascii: Out1<u64>,
}

/// Whether the core's large buffers ask for huge pages (see rust/src/buffer.rs: not on a VM whose
/// host takes back free memory, unless `SEQDISTILL_HUGE_PAGES=1`).
#[pyfunction]
fn huge_pages() -> bool {
    crate::buffer::huge_pages()
}

/// Checks UTF-8 string ids in Arrow layout in one pass (see `IdTextCheck`).
#[pyfunction]
fn check_id_text(
    py: Python<'_>,
    offsets: PyReadonlyArray1<'_, i64>,
    data: PyReadonlyArray1<'_, u8>,
) -> PyResult<IdTextCheck> {
    let o = slice(&offsets, "offsets")?;
    let d = slice(&data, "data")?;
    let t = py.detach(|| text::check_ids(o, d))?;
    Ok(id_text_check(py, t))
}

/// `check_id_text` for a `string_view` column (`StringViews`, read in place).
#[pyfunction]
fn check_id_views(py: Python<'_>, views: ViewsArg<'_>) -> PyResult<IdTextCheck> {
    let col = views.column()?;
    let t = py.detach(|| text::check_column(&col))?;
    Ok(id_text_check(py, t))
}

fn id_text_check(py: Python<'_>, t: text::IdText) -> IdTextCheck {
    IdTextCheck {
        first_empty: t.first_empty,
        first_control: t.first_control,
        first_nan_like: t.first_nan_like,
        padded: t.padded,
        int_like: t.int_like,
        non_ascii: arr(py, t.non_ascii),
    }
}

/// An id column: a list of int64 chunks, `(offsets int64, data uint8)` of UTF-8 strings in
/// Arrow `large_string` layout, or a `string_view` column (`StringViews`).
#[derive(FromPyObject)]
enum IdArg<'py> {
    Int(Vec<PyReadonlyArray1<'py, i64>>),
    Str(PyReadonlyArray1<'py, i64>, PyReadonlyArray1<'py, u8>),
    View(ViewsArg<'py>),
}

impl IdArg<'_> {
    fn ids(&self, name: &'static str) -> Result<Ids<'_>, CoreError> {
        Ok(match self {
            IdArg::Int(chunks) => Ids::Int(column(chunks, name)?),
            IdArg::Str(o, d) => Ids::Str(OffsetsStr::new(slice(o, name)?, slice(d, name)?)?),
            IdArg::View(v) => Ids::View(v.column()?),
        })
    }
}

/// A column given as a list of 1-d chunks, read in place.
fn column<'a, T: numpy::Element + Copy + Send + Sync>(
    chunks: &'a [PyReadonlyArray1<'_, T>],
    name: &'static str,
) -> Result<Column<'a, T>, CoreError> {
    Ok(Column::new(chunks.iter().map(|c| slice(c, name)).collect::<Result<Vec<_>, _>>()?))
}

/// The surviving raw ids in one of their three forms: `(values, first_rows, text)`.
type UniqueArrays = (Option<Out1<i64>>, Option<Out1<u64>>, Option<(Out1<i64>, Out1<u8>)>);

fn uniques(py: Python<'_>, u: Uniques) -> UniqueArrays {
    match u {
        Uniques::Int(v) => (Some(arr(py, v)), None, None),
        Uniques::FirstRows(v) => (None, Some(arr(py, v)), None),
        Uniques::Text(offsets, data) => (None, None, Some((arr(py, offsets), arr(py, data)))),
    }
}

fn split_spec(
    kind: &str,
    quantile: f64,
    threshold: Option<f64>,
    target: &str,
    valid: &str,
    valid_quantile: f64,
) -> Result<SplitSpec, CoreError> {
    match kind {
        "global_temporal" => Ok(SplitSpec::GlobalTemporal {
            quantile,
            threshold,
            target: Target::parse(target)?,
            valid: Valid::parse(valid, valid_quantile)?,
        }),
        "leave_one_out" => Ok(SplitSpec::LeaveOneOut),
        other => Err(CoreError::invalid("split", format!("must be one of {:?}, got {other:?}", split::SPLIT_KINDS))),
    }
}

/// The fused pipeline: encode → filter → chronological CSR → split → audit, in one call. Integer
/// ids, timestamps and ratings come as lists of chunks (read in place). `filter` is `"kcore"`
/// (`k_*` are minimum counts) or `"compat"` (one pass; counts must exceed `k_*`). Timestamps
/// counted `ts_per_second` to the second order each user's rows and are stored as whole seconds.
#[pyfunction]
#[pyo3(signature = (users, items, timestamps, ratings=None, *, filter="kcore", k_user=1, k_item=1, split="global_temporal", quantile=0.8, threshold=None, target="last", valid="time", valid_quantile=0.8, ts_per_second=1))]
#[allow(clippy::too_many_arguments)]
fn prepare_log(
    py: Python<'_>,
    users: IdArg<'_>,
    items: IdArg<'_>,
    timestamps: Vec<PyReadonlyArray1<'_, i64>>,
    ratings: Option<Vec<PyReadonlyArray1<'_, f32>>>,
    filter: &str,
    k_user: u32,
    k_item: u32,
    split: &str,
    quantile: f64,
    threshold: Option<f64>,
    target: &str,
    valid: &str,
    valid_quantile: f64,
    ts_per_second: i64,
) -> PyResult<PreparedLog> {
    let input = pipeline::Input {
        users: users.ids("users")?,
        items: items.ids("items")?,
        timestamps: column(&timestamps, "timestamps")?,
        ts_per_second,
        ratings: match &ratings {
            Some(r) => Some(column(r, "ratings")?),
            None => None,
        },
        filter: Filter::parse(filter)?,
        k_user,
        k_item,
        split: split_spec(split, quantile, threshold, target, valid, valid_quantile)?,
    };
    let p = py.detach(|| pipeline::prepare(&input))?;
    prepared_log(py, p)
}

/// The error for damage polars' parquet reader aborts the process on (see
/// `parquet_log::check_file`); its start is what the Python side recognizes.
fn damaged_file(why: &str) -> CoreError {
    CoreError::Data(format!("cannot read as parquet: a damaged file: {why}"))
}

/// Raises `DataError` when a parquet file holds damage polars' reader aborts the process on (see
/// `parquet_log::check_file`; `columns`: the top-level columns whose chunks are looked at, every
/// one when None); returns None otherwise, other damage included (polars describes it). Reads
/// the footer and page headers only.
#[pyfunction]
#[pyo3(signature = (path, columns=None))]
fn check_parquet(py: Python<'_>, path: std::path::PathBuf, columns: Option<Vec<String>>) -> PyResult<()> {
    match py.detach(|| parquet_log::check_file(&path, columns.as_deref())) {
        Err(parquet_log::ReadError::Damaged(why)) => Err(damaged_file(&why).into()),
        _ => Ok(()),
    }
}

/// The fused pipeline reading `path` itself (see `rust/src/parquet_log.rs`): the columns named
/// `user`, `item` and `timestamp` of a parquet file, then what `prepare_log` does. Returns
/// `(log, None, ts_range, ts_per_second)`, or `(None, reason, None, 0)` when the file holds
/// something this reader does not handle (a column type, an encoding, a codec, damage): the
/// caller then reads it another way (so too for a null, whose reason names the column and row).
/// Raises `DataError` for damage polars' reader would abort the process on (a page claiming a
/// negative number of values, a footer whose lists claim more elements than it has bytes).
/// `plain_strings=False` leaves files whose string ids are mostly stored without a dictionary to
/// the caller's reader too (polars reads those faster).
#[pyfunction]
#[pyo3(signature = (path, user, item, timestamp, *, filter="kcore", k_user=1, k_item=1, split="global_temporal", quantile=0.8, threshold=None, target="last", valid="time", valid_quantile=0.8, plain_strings=true))]
#[allow(clippy::too_many_arguments)]
fn prepare_parquet(
    py: Python<'_>,
    path: std::path::PathBuf,
    user: &str,
    item: &str,
    timestamp: &str,
    filter: &str,
    k_user: u32,
    k_item: u32,
    split: &str,
    quantile: f64,
    threshold: Option<f64>,
    target: &str,
    valid: &str,
    valid_quantile: f64,
    plain_strings: bool,
) -> PyResult<ParquetOutcome> {
    let filter = Filter::parse(filter)?;
    let split = split_spec(split, quantile, threshold, target, valid, valid_quantile)?;
    let started = std::time::Instant::now();
    let read = py.detach(|| parquet_log::read_log(&path, user, item, timestamp, plain_strings));
    let log = match read {
        Ok(log) => log,
        Err(parquet_log::ReadError::Unsupported(why)) => return Ok((None, Some(why), None, 0)),
        Err(parquet_log::ReadError::Damaged(why)) => return Err(damaged_file(&why).into()),
        // The caller's reader finds the same null and words it as for every other file.
        Err(parquet_log::ReadError::Null { column, row }) => {
            return Ok((None, Some(format!("column {column:?} is null at row {row}")), None, 0))
        }
    };
    let stages = vec![("read+encode", started.elapsed().as_secs_f64())];
    let (range, per_second) = (log.ts_range, log.ts_per_second);
    let input = pipeline::Input {
        users: Ids::Int(Column::new(Vec::new())),
        items: Ids::Int(Column::new(Vec::new())),
        timestamps: Column::new(vec![log.timestamps.as_slice()]),
        ts_per_second: per_second,
        ratings: None,
        filter,
        k_user,
        k_item,
        split,
    };
    let p = py.detach(|| pipeline::prepare_encoded(log.users, log.items, log.codes, log.rows, &input, stages))?;
    Ok((Some(prepared_log(py, p)?), None, range, per_second))
}

type ParquetOutcome = (Option<PreparedLog>, Option<String>, Option<(i64, i64)>, i64);

fn prepared_log(py: Python<'_>, p: pipeline::Prepared) -> PyResult<PreparedLog> {
    let (user_values, user_first_rows, user_text) = uniques(py, p.users);
    let (item_values, item_first_rows, item_text) = uniques(py, p.items);
    let split = match p.split {
        Some(s) => Some(Py::new(py, SplitResult::new(py, s))?),
        None => None,
    };
    let audit = match p.audit {
        Some(a) => Some(Py::new(py, AuditCounts::from(a))?),
        None => None,
    };
    Ok(PreparedLog {
        user_values,
        user_first_rows,
        user_text,
        item_values,
        item_first_rows,
        item_text,
        offsets: arr(py, p.offsets),
        items: arr(py, p.item_csr),
        timestamps: arr(py, p.timestamps),
        ratings: p.ratings.map(|r| arr(py, r)),
        split,
        users_before: p.users_before,
        items_before: p.items_before,
        kcore_rounds: p.kcore_rounds,
        rows_dropped: p.rows_dropped,
        kcore_removed: rounds(py, &p.kcore_removed)?,
        audit,
        user_id_check: p.user_check.map(|t| Py::new(py, id_text_check(py, t))).transpose()?,
        item_id_check: p.item_check.map(|t| Py::new(py, id_text_check(py, t))).transpose()?,
        stages: p.stages.into_iter().map(|(s, t)| (s.to_string(), t)).collect(),
    })
}

/// Iterative k-core over dense codes.
#[pyfunction]
#[pyo3(signature = (users, items, n_users, n_items, k_user, k_item))]
fn kcore(
    py: Python<'_>,
    users: PyReadonlyArray1<'_, u32>,
    items: PyReadonlyArray1<'_, u32>,
    n_users: usize,
    n_items: usize,
    k_user: u32,
    k_item: u32,
) -> PyResult<KCoreResult> {
    let u = slice(&users, "users")?;
    let i = slice(&items, "items")?;
    let r = py.detach(|| peel::kcore(u, i, n_users, n_items, k_user, k_item))?;
    let (umap, nu) = ids::compact_map(&r.keep_users);
    let (imap, ni) = ids::compact_map(&r.keep_items);
    let to_i64 =
        |m: Vec<u32>| -> Vec<i64> { m.into_iter().map(|c| if c == u32::MAX { -1 } else { c as i64 }).collect() };
    Ok(KCoreResult {
        keep: arr(py, r.keep),
        user_map: arr(py, to_i64(umap)),
        item_map: arr(py, to_i64(imap)),
        n_users: nu,
        n_items: ni,
        rounds: r.rounds,
        rows_dropped: r.rows_dropped,
        removed: rounds(py, &r.removed)?,
    })
}

/// Stable chronological order per user: returns (order uint32, offsets int64).
#[pyfunction]
fn sort_by_user_time<'py>(
    py: Python<'py>,
    users: PyReadonlyArray1<'py, u32>,
    timestamps: PyReadonlyArray1<'py, i64>,
    n_users: usize,
) -> PyResult<(Arr1<'py, u32>, Arr1<'py, i64>)> {
    let u = slice(&users, "users")?;
    let t = slice(&timestamps, "timestamps")?;
    let (order, offsets) = py.detach(|| split::sort_by_user_time(u, t, n_users))?;
    Ok((order.into_pyarray(py), offsets.into_pyarray(py)))
}

/// Global temporal split over the chronological CSR. `threshold` overrides the quantile.
#[pyfunction]
#[pyo3(signature = (offsets, timestamps, quantile=0.8, target="last", valid="time", valid_quantile=0.8, threshold=None))]
#[allow(clippy::too_many_arguments)]
fn global_temporal_split(
    py: Python<'_>,
    offsets: PyReadonlyArray1<'_, i64>,
    timestamps: PyReadonlyArray1<'_, i64>,
    quantile: f64,
    target: &str,
    valid: &str,
    valid_quantile: f64,
    threshold: Option<f64>,
) -> PyResult<SplitResult> {
    let o = slice(&offsets, "offsets")?;
    let t = slice(&timestamps, "timestamps")?;
    let target = Target::parse(target)?;
    let valid = Valid::parse(valid, valid_quantile)?;
    let s = py.detach(|| {
        split::check_offsets(o, t.len())?;
        split::check_chronological(o, t)?;
        match threshold {
            Some(th) => split::threshold_split(o, t, th, target, valid),
            None => split::global_temporal(o, t, quantile, target, valid),
        }
    })?;
    Ok(SplitResult::new(py, s))
}

/// Leave-one-out split over the chronological CSR offsets.
#[pyfunction]
fn leave_one_out_split(py: Python<'_>, offsets: PyReadonlyArray1<'_, i64>) -> PyResult<SplitResult> {
    let o = slice(&offsets, "offsets")?;
    if o.first().is_some_and(|&x| x != 0) || o.windows(2).any(|w| w[0] > w[1]) {
        return Err(CoreError::invalid("offsets", "must start at 0 and not decrease").into());
    }
    let s = py.detach(|| split::leave_one_out(o));
    Ok(SplitResult::new(py, s))
}

// ------------------------------------------------------------------------------- sequences

/// Sliding training windows: returns (users, ends) int64.
#[pyfunction]
#[pyo3(signature = (train_end, length, stride, min_len=2))]
fn training_windows<'py>(
    py: Python<'py>,
    train_end: PyReadonlyArray1<'py, i64>,
    length: usize,
    stride: usize,
    min_len: usize,
) -> PyResult<(Arr1<'py, i64>, Arr1<'py, i64>)> {
    let t = slice(&train_end, "train_end")?;
    let (u, e) = py.detach(|| sequences::training_windows(t, length, stride, min_len))?;
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
    let (o, i, u, e) =
        (slice(&offsets, "offsets")?, slice(&items, "items")?, slice(&users, "users")?, slice(&ends, "ends")?);
    let rows = u.len();
    let out = py.detach(|| sequences::gather_windows(o, i, u, e, length))?;
    out.into_pyarray(py).reshape([rows, length])
}

/// A seeded permutation of 0..n (int64).
#[pyfunction]
fn permutation(py: Python<'_>, n: usize, seed: u64) -> PyResult<Arr1<'_, i64>> {
    Ok(py.detach(|| sequences::permutation(n, seed))?.into_pyarray(py))
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
    let (o, i, u, e) =
        (slice(&offsets, "offsets")?, slice(&items, "items")?, slice(&users, "users")?, slice(&ends, "ends")?);
    let (so, si) = py.detach(|| sequences::seen_items(o, i, u, e))?;
    Ok((so.into_pyarray(py), si.into_pyarray(py)))
}

// --------------------------------------------------------------------------------- metrics

/// The optional seen-items CSR of the metric functions: both arrays or neither.
fn seen_csr<'a>(
    offsets: &'a Option<PyReadonlyArray1<'_, i64>>,
    items: &'a Option<PyReadonlyArray1<'_, i64>>,
) -> Result<Option<metrics::Csr<'a>>, CoreError> {
    match (offsets, items) {
        (Some(o), Some(v)) => {
            Ok(Some(metrics::Csr { offsets: slice(o, "seen_offsets")?, values: slice(v, "seen_items")? }))
        }
        (None, None) => Ok(None),
        _ => Err(CoreError::invalid("seen_items", "give both seen_offsets and seen_items, or neither")),
    }
}

/// Top-k ids and per-row NDCG/Recall/HitRate/MRR at each k from a float32 score matrix.
#[pyfunction]
#[pyo3(signature = (scores, ks, gt_offsets, gt_items, seen_offsets=None, seen_items=None, min_item=0))]
#[allow(clippy::too_many_arguments)]
fn topk_metrics(
    py: Python<'_>,
    scores: PyReadonlyArray2<'_, f32>,
    ks: Vec<usize>,
    gt_offsets: PyReadonlyArray1<'_, i64>,
    gt_items: PyReadonlyArray1<'_, i64>,
    seen_offsets: Option<PyReadonlyArray1<'_, i64>>,
    seen_items: Option<PyReadonlyArray1<'_, i64>>,
    min_item: usize,
) -> PyResult<TopkMetrics> {
    let n_items = scores.shape()[1];
    let s = matrix(&scores, "scores")?;
    let truth = metrics::Csr { offsets: slice(&gt_offsets, "gt_offsets")?, values: slice(&gt_items, "gt_items")? };
    let seen = seen_csr(&seen_offsets, &seen_items)?;
    let out = py.detach(|| metrics::topk_metrics(s, n_items, &ks, &truth, seen.as_ref(), min_item))?;
    selection_result(py, out, &ks)
}

/// The Python record of a selection: its metrics and its `[rows, max(ks)]` top-k ids.
fn selection_result(py: Python<'_>, out: metrics::MetricsOut, ks: &[usize]) -> PyResult<TopkMetrics> {
    let rows = out.topk.len() / out.max_k.max(1);
    let topk = out.topk.into_pyarray(py).reshape([rows, out.max_k])?;
    topk_result(py, out.values, ks, topk, rows)
}

/// Top-k selection of a block of rows fed as column tiles in increasing column order (see
/// `metrics::TopkStream`): `feed` ranks a `[rows, width]` float32 tile without the GIL, `finish`
/// returns what `topk_metrics` returns for the whole block and starts the stream over.
#[pyclass(module = "seqdistill._core")]
pub struct TopkStream {
    inner: metrics::TopkStream,
}

#[pymethods]
impl TopkStream {
    #[new]
    #[pyo3(signature = (rows, ks, seen_offsets=None, seen_items=None, min_item=0))]
    fn new(
        rows: usize,
        ks: Vec<usize>,
        seen_offsets: Option<PyReadonlyArray1<'_, i64>>,
        seen_items: Option<PyReadonlyArray1<'_, i64>>,
        min_item: usize,
    ) -> PyResult<Self> {
        let seen = seen_csr(&seen_offsets, &seen_items)?;
        Ok(TopkStream { inner: metrics::TopkStream::new(rows, &ks, seen.as_ref(), min_item)? })
    }

    #[getter]
    fn rows(&self) -> usize {
        self.inner.rows()
    }

    /// The next column `feed` expects (0 after `finish`).
    #[getter]
    fn next_col(&self) -> usize {
        self.inner.next_col()
    }

    /// Ranks columns `col0 .. col0 + tile.shape[1]` of every row.
    fn feed(&mut self, py: Python<'_>, tile: PyReadonlyArray2<'_, f32>, col0: usize) -> PyResult<()> {
        let width = tile.shape()[1];
        if tile.shape()[0] != self.inner.rows() {
            return Err(CoreError::invalid(
                "tile",
                format!("expected {} rows, got {}", self.inner.rows(), tile.shape()[0]),
            )
            .into());
        }
        let t = matrix(&tile, "tile")?;
        let inner = &mut self.inner;
        py.detach(|| inner.feed(t, width, col0))?;
        Ok(())
    }

    /// Per-row metrics against the ground truth (CSR) and the top-`max(ks)` ids.
    fn finish(
        &mut self,
        py: Python<'_>,
        gt_offsets: PyReadonlyArray1<'_, i64>,
        gt_items: PyReadonlyArray1<'_, i64>,
    ) -> PyResult<TopkMetrics> {
        let truth = metrics::Csr { offsets: slice(&gt_offsets, "gt_offsets")?, values: slice(&gt_items, "gt_items")? };
        let ks = self.inner.ks().to_vec();
        let out = self.inner.finish(&truth)?;
        selection_result(py, out, &ks)
    }
}

/// Metrics from precomputed top-k ids `[rows, k]` int64 (−1 = empty slot).
#[pyfunction]
fn topk_metrics_from_ids(
    py: Python<'_>,
    topk: PyReadonlyArray2<'_, i64>,
    ks: Vec<usize>,
    gt_offsets: PyReadonlyArray1<'_, i64>,
    gt_items: PyReadonlyArray1<'_, i64>,
) -> PyResult<TopkMetrics> {
    let k = topk.shape()[1];
    let rows = topk.shape()[0];
    let t = matrix(&topk, "topk")?;
    let truth = metrics::Csr { offsets: slice(&gt_offsets, "gt_offsets")?, values: slice(&gt_items, "gt_items")? };
    let values = py.detach(|| metrics::metrics_from_ids(t, k, &ks, &truth))?;
    let ids = PyArray1::from_slice(py, t).reshape([rows, k])?;
    topk_result(py, values, &ks, ids, rows)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(encode_i64, m)?)?;
    m.add_function(wrap_pyfunction!(encode_str, m)?)?;
    m.add_function(wrap_pyfunction!(encode_str_views, m)?)?;
    m.add_function(wrap_pyfunction!(check_id_text, m)?)?;
    m.add_function(wrap_pyfunction!(huge_pages, m)?)?;
    m.add_function(wrap_pyfunction!(check_id_views, m)?)?;
    m.add_function(wrap_pyfunction!(prepare_log, m)?)?;
    m.add_function(wrap_pyfunction!(prepare_parquet, m)?)?;
    m.add_function(wrap_pyfunction!(check_parquet, m)?)?;
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
    m.add_class::<KCoreResult>()?;
    m.add_class::<KCoreRounds>()?;
    m.add_class::<AuditCounts>()?;
    m.add_class::<IdTextCheck>()?;
    m.add_class::<SplitResult>()?;
    m.add_class::<PreparedLog>()?;
    m.add_class::<TopkMetrics>()?;
    m.add_class::<TopkStream>()?;
    m.add("TARGETS", PyTuple::new(m.py(), Target::NAMES)?)?;
    m.add("VALID_MODES", PyTuple::new(m.py(), split::VALID_NAMES)?)?;
    m.add("SPLIT_KINDS", PyTuple::new(m.py(), split::SPLIT_KINDS)?)?;
    m.add("FILTERS", PyTuple::new(m.py(), Filter::NAMES)?)?;
    m.add("METRICS", PyTuple::new(m.py(), METRIC_NAMES)?)?;
    m.add("MAX_K", metrics::MAX_K)?;
    m.add("NAN_LIKE_IDS", PyTuple::new(m.py(), text::NAN_LIKE)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
