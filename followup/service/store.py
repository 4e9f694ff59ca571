"""On-disk layout of the service and atomic writes. No received instance is ever lost:

    DATA_DIR/spool/                       temporary files being written (same file system)
    DATA_DIR/store/<Study>/<Series>/<SOP>.dcm   received instances (atomic: temp + fsync + rename)
    DATA_DIR/quarantine/<time>-<hash>.dcm + .json   refused input with its reason
    DATA_DIR/reports/<Study>/<version>-r<revision>/  reports of one analysis (never overwritten)

Names built from DICOM UIDs are validated first (digits and dots only, <= 64 characters), so a
UID can never become a path such as ``../../etc``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

from followup.atomic import commit, write_atomic

UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def dataset_bytes(data: bytes) -> bytes:
    """A DICOM file's bytes after its File Meta Information (the preamble, "DICM" and group 2
    left out: who wrote the file, not what it holds); all of ``data`` when it has none or it
    cannot be told where group 2 ends."""
    if data[128:132] != b"DICM" or data[132:140] != b"\x02\x00\x00\x00UL\x04\x00":
        return data
    return data[144 + int.from_bytes(data[140:144], "little"):]


class InvalidUID(ValueError):
    pass


def valid_uid(uid: object) -> bool:
    return isinstance(uid, str) and 0 < len(uid) <= 64 and UID_RE.match(uid) is not None


def checked_uid(uid: object, what: str = "UID") -> str:
    if not valid_uid(uid):
        raise InvalidUID(f"invalid {what}: {str(uid)[:80]!r} (digits and dots only, at most 64)")
    return uid  # type: ignore[return-value]


class Store:
    """``sync``: fsync each file and its directory before a write counts as done (survives a
    power cut); without it a write is still atomic (temp file + rename) and survives any process
    crash, not a power cut (``Settings.sync_storage``)."""

    def __init__(self, data_dir: Path | str, *, sync: bool = True) -> None:
        self.root = Path(data_dir)
        self.sync = bool(sync)
        self.spool = self.root / "spool"
        self.instances = self.root / "store"
        self.quarantine_dir = self.root / "quarantine"
        self.reports = self.root / "reports"
        for d in (self.spool, self.instances, self.quarantine_dir, self.reports):
            d.mkdir(parents=True, exist_ok=True)

    # --- paths ---------------------------------------------------------------------------------
    def study_dir(self, study_uid: str) -> Path:
        return self.instances / checked_uid(study_uid, "Study Instance UID")

    def instance_path(self, study_uid: str, series_uid: str, sop_uid: str) -> Path:
        return (self.study_dir(study_uid) / checked_uid(series_uid, "Series Instance UID")
                / f"{checked_uid(sop_uid, 'SOP Instance UID')}.dcm")

    def report_dir(self, study_uid: str, version: str, revision: int) -> Path:
        if not re.fullmatch(r"[0-9A-Za-z.+_-]{1,40}", version):
            raise ValueError(f"invalid algorithm version {version!r}")
        return self.reports / checked_uid(study_uid, "Study Instance UID") / f"{version}-r{int(revision)}"

    # --- writes --------------------------------------------------------------------------------
    def write_atomic(self, final: Path, data: bytes | None = None, *, src_tmp: Path | None = None) -> Path:
        """Put bytes (or an already written temp file of the spool) at ``final`` durably
        (:mod:`followup.atomic`)."""
        if src_tmp is None:
            return write_atomic(final, data or b"", tmp_dir=self.spool, sync=self.sync)
        if self.sync:
            with open(src_tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        return commit(src_tmp, final, sync=self.sync)

    def new_spool_file(self) -> tuple[int, Path]:
        fd, name = tempfile.mkstemp(dir=self.spool, suffix=".part")
        return fd, Path(name)

    def quarantine(self, data: bytes, reason: str, **meta: object) -> Path:
        """Keep refused input with its reason (never silently dropped)."""
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
        digest = hashlib.sha256(data).hexdigest()[:12]
        base = self.quarantine_dir / f"{stamp}-{digest}"
        self.write_atomic(base.with_suffix(".dcm"), data)
        info = {"reason": reason, "received": stamp, "bytes": len(data), **{k: str(v) for k, v in meta.items()}}
        self.write_atomic(base.with_suffix(".json"), (json.dumps(info, indent=2) + "\n").encode())
        return base.with_suffix(".dcm")

    def clean_spool(self) -> int:
        """Remove partial files left by a crash (never acknowledged, so the sender resends)."""
        n = 0
        for p in self.spool.glob("*"):
            p.unlink(missing_ok=True)
            n += 1
        return n
