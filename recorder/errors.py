"""One error hierarchy for everything a user can get wrong.

Bad bytes from the bus are never raised: the protocol layers count them. These errors are for
input that comes from a person (a flag, a file, a URL, a database path). The CLI turns any
`RecorderError` into a single line on stderr and a non-zero exit code.
"""

from __future__ import annotations


class RecorderError(Exception):
    """Base class: a problem the user can fix, with a message that says what and how."""

    exit_code = 2


class UsageError(RecorderError):
    """A flag, option or argument has a value we cannot use."""


class SourceError(RecorderError):
    """A source URL is malformed, or the device/file/host behind it cannot be opened."""


class CaptureFormatError(RecorderError):
    """A capture file is not in the expected format (or is corrupt at some offset)."""


class ConfigError(RecorderError):
    """The configuration file or environment holds a value we cannot use."""


class StateDatabaseError(RecorderError):
    """The state database is unusable: corrupt, locked, or newer than this program."""


class ImportFormatError(RecorderError):
    """A mapping file given to `nodes import` is not one of the layouts we understand."""


class NotFoundError(RecorderError):
    """Something the user named (a barcode, a node) is not known."""


class NothingDecodedError(RecorderError):
    """An input held bytes but not one thing the recorder could decode from them (see
    `sources.nothing_decoded`). Exit 1, as for a file a backfill had to skip."""

    exit_code = 1
