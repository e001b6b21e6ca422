"""The exceptions seqdistill raises on purpose.

Every error a user can cause — a bad file, a bad value in a column, a bad configuration key, an
output folder that is not ours to replace — is a :class:`SeqdistillError`. Its message is one line
that names the file, the column or key, the row and the value. The command line prints that line
and exits with status 2; anything else escaping the library is a bug.

The Rust core raises the same classes: ``rust/src/bindings.rs`` converts its one ``CoreError``
enum into them in one place (``import_exception!``), so this module is the single definition.

    SeqdistillError
    ├── DataError        bad input data (names the source, column, row and value)
    ├── ConfigError      bad configuration (names the file and the key)
    ├── CoreError        arguments the Rust core refuses (shapes, ranges, options)
    ├── OutputError      an output path we must not write or replace
    ├── StoreError       a profile store that does not belong to this dataset, or is damaged
    └── TrainingError    training cannot go on (e.g. a non-finite loss)

Each class also derives from the builtin that callers caught before it existed (``ValueError``,
``FileExistsError``, ``RuntimeError``), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "CoreError",
    "DataError",
    "OutputError",
    "SeqdistillError",
    "SeqdistillWarning",
    "StoreError",
    "TrainingError",
]


class SeqdistillError(Exception):
    """Base of every error seqdistill raises on purpose (a user's mistake, not a bug)."""


class DataError(SeqdistillError, ValueError):
    """Bad input data: the message names the source, the column, the row and the value."""


class ConfigError(SeqdistillError, ValueError):
    """A bad configuration: the message names the source file and the key."""


class CoreError(SeqdistillError, ValueError):
    """Arguments refused by the Rust core: mismatched lengths, codes out of range, bad options."""


class OutputError(SeqdistillError, FileExistsError):
    """An output path seqdistill must not write: a folder it did not create, a file in the way."""


class StoreError(SeqdistillError, ValueError):
    """A profile store that belongs to another dataset or model, or whose files are damaged."""


class TrainingError(SeqdistillError, RuntimeError):
    """Training cannot continue, e.g. the loss became NaN or infinite."""


class SeqdistillWarning(UserWarning):
    """Something a user should know that does not stop the work (e.g. a split with no test
    targets); the command line prints it as one line ``seqdistill <cmd>: warning: ...``."""
