"""C-STORE response statuses of the listener, and the response data set that carries one."""

from __future__ import annotations

from pydicom.dataset import Dataset

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700  # transient: the PACS should retry
INSTANCE_TOO_LARGE = 0xA701  # refused: out of resources (a configured bound), retrying will not help
STUDY_TOO_LARGE = 0xA702
DATASET_DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000


def response(code: int, comment: str | None = None) -> Dataset:
    """The status data set a pynetdicom C-STORE handler returns (comment: 64 characters, no '\\')."""
    ds = Dataset()
    ds.Status = code
    if comment:
        ds.ErrorComment = comment.replace("\\", "/")[:64]
    return ds
