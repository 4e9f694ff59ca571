"""The procedure record (``procedure.json``): what was ablated, where, and how.

Schema (exact; other tools write it)::

    {"patient_id": str, "procedure_date": "YYYY-MM-DD", "laterality": "L"|"R",
     "lesion": {"center_lps_mm": [x, y, z],        # tumour centre, BASELINE patient coordinates
                "diameter_mm": number,
                "histology": "IDC"|"ILC"|"DCIS"|"mixed",
                "grade": 1|2|3,
                "dcis_component_pct": number,      # 0..100, share of the biopsy
                "insitu_grade": "low"|"intermediate"|"high"|null},
     "freeze_thaw_cycles": int,
     "margin_mm": number}

Indication limits quoted by :func:`followup.record_rules.indication_notes` come from ../shared/clinical-evidence.md
(the cryotherapy deck): unifocal cancer < 15 mm seen on ultrasound; > 2 cm halves the
complete-response rate; lobular carcinoma and extensive DCIS (> 25 % of the biopsy) are
contraindications; >= 2 freeze-thaw cycles; 10 mm peri-lesional margin.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from followup.errors import ProcedureRecordError

# Deck ("Que retenir ?"): indication = unifocal cancer < 15 mm visible on ultrasound (95-100 % CR).
INDICATION_MAX_DIAMETER_MM = 15.0
# Deck: "Attention si T > 2 cm RC divisé par 2" (nearest published support: Pfleiderer 2002).
CR_HALVED_ABOVE_DIAMETER_MM = 20.0
# Deck: contra-indication "CCIS étendu (> 25 % à la biopsie)"; Z1072 inclusion < 25 % intraductal.
EXTENSIVE_DCIS_PCT = 25.0
# Deck: ">= 2 cycles gel - dégel".
MIN_FREEZE_THAW_CYCLES = 2
# Deck: "Marges péri lésionnelles 10 mm".
TARGET_MARGIN_MM = 10.0


def _finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number")
    return value


class Lesion(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    center_lps_mm: Annotated[list[float], Field(min_length=3, max_length=3)]
    diameter_mm: Annotated[float, Field(gt=0, le=100)]
    histology: Literal["IDC", "ILC", "DCIS", "mixed"]
    grade: Literal[1, 2, 3]
    dcis_component_pct: Annotated[float, Field(ge=0, le=100)]
    insitu_grade: Literal["low", "intermediate", "high"] | None

    @field_validator("center_lps_mm")
    @classmethod
    def _centre_finite(cls, v: list[float]) -> list[float]:
        return [_finite(x, "center_lps_mm") for x in v]


class ProcedureRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    patient_id: Annotated[str, Field(min_length=1, max_length=64)]
    procedure_date: dt.date
    laterality: Literal["L", "R"]
    lesion: Lesion
    freeze_thaw_cycles: Annotated[int, Field(ge=1, le=10)]
    margin_mm: Annotated[float, Field(ge=0, le=50)]

    @field_validator("procedure_date", mode="before")
    @classmethod
    def _iso_date(cls, v: object) -> object:
        if isinstance(v, str):
            try:
                return dt.date.fromisoformat(v) if len(v) == 10 else _bad_date(v)
            except ValueError:
                _bad_date(v)
        return v

    def to_json_dict(self) -> dict:
        return json.loads(self.model_dump_json())


def _bad_date(v: str) -> dt.date:
    raise ValueError(f"procedure_date must be YYYY-MM-DD, got {v!r}")


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        field = ""
        for part in e["loc"]:
            field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
        field = field or "(record)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field (not in the procedure schema)"
        elif e["type"] == "missing":
            msg = "missing required field"
        lines.append(f"{field}: {msg}")
    return f"{source}: invalid procedure record: " + "; ".join(lines)


def parse_procedure(data: dict, source: str = "procedure record") -> ProcedureRecord:
    try:
        return ProcedureRecord.model_validate(data)
    except ValidationError as err:
        raise ProcedureRecordError(_format_validation_error(err, source)) from None


def load_procedure(path: Path | str) -> ProcedureRecord:
    """Read and validate procedure.json; errors name the offending field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProcedureRecordError(f"{path}: procedure record not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProcedureRecordError(f"{path}: cannot read procedure record ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProcedureRecordError(
            f"{path.name}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if not isinstance(data, dict):
        raise ProcedureRecordError(f"{path.name}: the procedure record must be a JSON object")
    return parse_procedure(data, source=path.name)
