"""Errors the product reports to its users: each has a stable ``code`` and a plain message.

Messages never contain patient identifiers (names, IDs, birth dates); they may name files,
series descriptions and DICOM UIDs.
"""

from __future__ import annotations


class FollowupError(Exception):
    """Base class: a problem with the input that the user can act on (no traceback needed)."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class IngestError(FollowupError):
    """The DICOM input cannot be turned into a correct DCE study."""

    code = "ingest"


class ProcedureRecordError(FollowupError):
    """procedure.json is missing, unreadable or does not match the schema."""

    code = "procedure-record"
