//! The one error type of the core. `bindings.rs` converts it, in one place, into the Python
//! classes of `seqdistill.errors`: `Data` variants become `DataError` (the log itself is bad),
//! every other variant `CoreError` (the arrays or options handed to the core are inconsistent).

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum CoreError {
    /// Two arrays that must have the same length do not.
    LengthMismatch { what: &'static str, expected: usize, got: usize },
    /// A code, position or user index outside its range.
    OutOfRange { what: &'static str, row: usize, value: i64, limit: usize },
    /// An option or numeric argument with a value the core does not accept.
    InvalidArgument { name: &'static str, message: String },
    /// Arrow-layout string offsets that are not monotone or point past the data.
    InvalidOffsets { what: &'static str, row: usize },
    /// More rows than the core can index.
    TooManyRows { rows: usize, limit: usize },
    /// An output the arguments ask for that cannot be allocated (refused instead of aborting).
    TooLarge { what: &'static str, elements: u128, bytes: u128 },
    /// The log is bad in a way the user must fix (empty after filtering, nothing to split, ...).
    Data(String),
}

pub type Result<T> = std::result::Result<T, CoreError>;

impl CoreError {
    pub fn invalid(name: &'static str, message: impl Into<String>) -> Self {
        CoreError::InvalidArgument { name, message: message.into() }
    }

    /// True for errors the user fixes in the data (`seqdistill.errors.DataError` in Python).
    pub fn is_data(&self) -> bool {
        matches!(self, CoreError::Data(_) | CoreError::TooManyRows { .. })
    }
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::LengthMismatch { what, expected, got } => {
                write!(f, "{what}: expected {expected} rows, got {got}")
            }
            CoreError::OutOfRange { what, row, value, limit } => {
                write!(f, "{what}: value {value} at row {row} is out of range (must be below {limit})")
            }
            CoreError::InvalidArgument { name, message } => write!(f, "{name}: {message}"),
            CoreError::InvalidOffsets { what, row } => {
                write!(f, "{what}: invalid string offsets at row {row}")
            }
            CoreError::TooManyRows { rows, limit } => {
                write!(f, "{rows} rows: the core handles at most {limit} rows per call")
            }
            CoreError::TooLarge { what, elements, bytes } => write!(
                f,
                "{what}: {elements} elements ({:.1} GiB) cannot be allocated; check the arguments",
                *bytes as f64 / (1u64 << 30) as f64
            ),
            CoreError::Data(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for CoreError {}

/// Checks that `got` equals `expected` rows.
pub fn same_len(what: &'static str, expected: usize, got: usize) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(CoreError::LengthMismatch { what, expected, got })
    }
}
