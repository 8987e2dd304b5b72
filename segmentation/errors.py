"""User-facing errors.

Every exception here carries one friendly line that says what was wrong and how to do it
right. The CLI and the bot print ``str(error)`` and nothing else: no traceback.
"""

from __future__ import annotations


class SegmentationError(Exception):
    """Base class: the message is shown to the user as-is."""

    exit_code = 1


class InputError(SegmentationError):
    """The user typed something we cannot use (bad numbers, unknown customer or segment)."""

    exit_code = 2


class DataError(SegmentationError):
    """The order history cannot be read: missing file or column, nothing left after filtering."""


class EngineMemoryError(DataError):
    """The engine ran out of its memory limit on work it could not spill: a step that had
    lowered the limit may try again with the whole of it."""


class ModelNotFoundError(SegmentationError):
    """No model has been trained yet, or the requested version does not exist."""


class ModelIntegrityError(SegmentationError):
    """A model file does not match the checksum recorded when it was written."""


class PlaybookError(SegmentationError):
    """The marketing playbook file is missing a segment or is malformed."""


class StorageError(SegmentationError):
    """The disk refused a write: full, over quota, or read-only (``atomic.disk_errors``)."""
