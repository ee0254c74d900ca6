"""Errors a user can cause, each also a built-in a caller would catch.

The CLI turns every ``EznasError`` into one line on stderr and exit code 2, so any
message here should read as a complete sentence that says what to change.
"""

from __future__ import annotations


class EznasError(Exception):
    """Base of every error this package raises on purpose."""


class InvalidArchError(EznasError, ValueError):
    """A cell or architecture string does not parse (names the token and position)."""


class UnknownNameError(EznasError, KeyError):
    """A space, dataset, proxy, primitive or terminal name that does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return str(self.args[0]) if self.args else ""


class DataNotFoundError(EznasError, FileNotFoundError):
    """A dataset, benchmark table or data root is missing or incomplete."""


class BenchmarkFormatError(EznasError, ValueError):
    """A benchmark table or published data file is not in the expected format."""


class StoreError(EznasError, OSError):
    """A path is not an eznas store, or the store is inconsistent."""


class CorruptChunkError(StoreError):
    """A chunk of a store cannot be decoded; names the networks it holds."""


class ProgramError(EznasError, ValueError):
    """A program JSON document is malformed or names unknown operations/terminals."""


class OutputError(EznasError, OSError):
    """A result file or folder cannot be written where the user asked (e.g. ``--out`` is a file)."""


class ConfigError(EznasError, ValueError):
    """A job file or option value is invalid."""


class EznasWarning(UserWarning):
    """Base of this package's warnings: the CLI prints each as one line."""


class IncompleteStoreWarning(EznasWarning):
    """A store is used while some of its networks are not collected yet."""


class RoundoffSkippedWarning(EznasWarning):
    """The round-off check of an evolve's saved programs could not run (the programs are kept)."""
