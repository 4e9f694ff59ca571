"""Atomic file writes: a reader sees the old file or the whole new one, never a part.

The one implementation for the reports of an analysis (:mod:`followup.job`) and the service's
store (:class:`followup.service.store.Store`): bytes go to a temporary file on the same file
system, are flushed (and fsynced with ``sync``), then renamed over the final name; with ``sync``
the directory is fsynced too, so the rename survives a power cut.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(tmp: Path, final: Path, *, sync: bool = True) -> Path:
    """Rename a fully written temporary file to ``final`` (same file system)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, final)
    if sync:
        fsync_dir(final.parent)
    return final


def write_atomic(final: Path, data: bytes, *, tmp_dir: Path | None = None, sync: bool = True,
                 mode: int | None = None) -> Path:
    """Put ``data`` at ``final`` atomically. ``tmp_dir``: where the temporary file is made (the
    same file system as ``final``; default: ``final``'s folder); ``mode``: its permissions
    (default: mkstemp's owner-only 0600)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=tmp_dir or final.parent, prefix=f".{final.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        if mode is not None:
            os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
        return commit(tmp, final, sync=sync)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


__all__ = ["commit", "fsync_dir", "write_atomic"]
