"""Service configuration: environment variables, each also a CLI option.

| variable | meaning | default |
| --- | --- | --- |
| FOLLOWUP_DATA_DIR | spool, store, quarantine, reports, SQLite file | ./followup-data |
| FOLLOWUP_DB_URL | SQLAlchemy URL (SQLite or PostgreSQL) | sqlite:///<data dir>/followup.db |
| FOLLOWUP_REDIS_URL | Celery broker and result backend | redis://127.0.0.1:6379/0 |
| FOLLOWUP_API_TOKEN | bearer token of the API | (none: the API refuses to start) |
| FOLLOWUP_DESTINATION | PACS that receives SR/SEG/PDF, AET@HOST:PORT | (none: nothing is sent) |
| FOLLOWUP_AE_TITLE | our AE title (listener and SCU) | FOLLOWUP |
| FOLLOWUP_RETRIEVE | PACS to C-FIND/C-MOVE baselines from, AET@HOST:PORT | (none) |
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

AE_TITLE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # DICOM AE: 16 chars, no backslash


@dataclass(frozen=True)
class DicomNode:
    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> "DicomNode":
        """``AET@HOST:PORT``."""
        m = re.fullmatch(r"([^@]{1,16})@([^:]+):(\d{1,5})", text.strip())
        if not m or not AE_TITLE_RE.match(m.group(1)) or not (0 < int(m.group(3)) < 65536):
            raise ValueError(f"expected AET@HOST:PORT, got {text!r}")
        return cls(m.group(1).strip(), m.group(2), int(m.group(3)))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=lambda: Path("followup-data"))
    db_url: str | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    api_token: str | None = None
    destination: DicomNode | None = None
    retrieve_from: DicomNode | None = None
    ae_title: str = "FOLLOWUP"

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{(self.data_dir / 'followup.db').resolve()}"

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        env = os.environ
        values = {
            "data_dir": Path(env.get("FOLLOWUP_DATA_DIR", "followup-data")),
            "db_url": env.get("FOLLOWUP_DB_URL") or None,
            "redis_url": env.get("FOLLOWUP_REDIS_URL", "redis://127.0.0.1:6379/0"),
            "api_token": env.get("FOLLOWUP_API_TOKEN") or None,
            "destination": DicomNode.parse(env["FOLLOWUP_DESTINATION"]) if env.get("FOLLOWUP_DESTINATION") else None,
            "retrieve_from": DicomNode.parse(env["FOLLOWUP_RETRIEVE"]) if env.get("FOLLOWUP_RETRIEVE") else None,
            "ae_title": env.get("FOLLOWUP_AE_TITLE", "FOLLOWUP"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(values["data_dir"], str):
            values["data_dir"] = Path(values["data_dir"])
        for key in ("destination", "retrieve_from"):
            if isinstance(values[key], str):
                values[key] = DicomNode.parse(values[key])
        return cls(**values)
