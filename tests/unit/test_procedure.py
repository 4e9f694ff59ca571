import json

import pytest

from followup.errors import ProcedureRecordError
from followup.procedure import load_procedure, parse_procedure
from followup.record_rules import indication_notes

GOOD = {
    "patient_id": "P001",
    "procedure_date": "2026-03-02",
    "laterality": "R",
    "lesion": {"center_lps_mm": [-80.5, -60.0, 12.0], "diameter_mm": 11, "histology": "IDC",
               "grade": 2, "dcis_component_pct": 0, "insitu_grade": None},
    "freeze_thaw_cycles": 2,
    "margin_mm": 10,
}


def _with(path: str, value):
    data = json.loads(json.dumps(GOOD))
    target = data
    keys = path.split(".")
    for k in keys[:-1]:
        target = target[k]
    if value is KeyError:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return data


def test_valid_record_round_trips():
    rec = parse_procedure(GOOD)
    assert rec.procedure_date.isoformat() == "2026-03-02"
    assert rec.lesion.center_lps_mm == [-80.5, -60.0, 12.0]
    assert rec.to_json_dict()["lesion"]["insitu_grade"] is None
    assert indication_notes(rec) == []


@pytest.mark.parametrize("path,value,field", [
    ("procedure_date", "02/03/2026", "procedure_date"),
    ("procedure_date", "2026-02-30", "procedure_date"),
    ("laterality", "B", "laterality"),
    ("lesion.histology", "papillary", "lesion.histology"),
    ("lesion.grade", 4, "lesion.grade"),
    ("lesion.center_lps_mm", [1, 2], "lesion.center_lps_mm"),
    ("lesion.center_lps_mm", [1, 2, "x"], "lesion.center_lps_mm[2]"),
    ("lesion.diameter_mm", -3, "lesion.diameter_mm"),
    ("lesion.dcis_component_pct", 130, "lesion.dcis_component_pct"),
    ("lesion.insitu_grade", "medium", "lesion.insitu_grade"),
    ("lesion.insitu_grade", KeyError, "lesion.insitu_grade"),
    ("freeze_thaw_cycles", 0, "freeze_thaw_cycles"),
    ("margin_mm", KeyError, "margin_mm"),
    ("patient_id", "", "patient_id"),
    ("extra_field", 1, "extra_field"),
])
def test_invalid_record_names_the_field(path, value, field):
    with pytest.raises(ProcedureRecordError) as exc:
        parse_procedure(_with(path, value))
    assert f"{field}:" in exc.value.message
    assert exc.value.code == "procedure-record"


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(ProcedureRecordError, match="not found"):
        load_procedure(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"patient_id": "P1",')
    with pytest.raises(ProcedureRecordError, match="not valid JSON"):
        load_procedure(bad)
    arr = tmp_path / "arr.json"
    arr.write_text("[1, 2]")
    with pytest.raises(ProcedureRecordError, match="JSON object"):
        load_procedure(arr)
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps(GOOD))
    assert load_procedure(ok).patient_id == "P001"


def test_indication_notes_follow_the_deck():
    notes = indication_notes(parse_procedure(_with("lesion.histology", "ILC")))
    assert any("Lobular" in n for n in notes)
    notes = indication_notes(parse_procedure(_with("lesion.dcis_component_pct", 30)))
    assert any("25%" in n for n in notes)
    notes = indication_notes(parse_procedure(_with("lesion.diameter_mm", 24)))
    assert any("halved" in n for n in notes)
    notes = indication_notes(parse_procedure(_with("lesion.diameter_mm", 16)))
    assert any("< 15 mm" in n for n in notes)
    notes = indication_notes(parse_procedure(_with("freeze_thaw_cycles", 1)))
    assert any(">= 2" in n for n in notes)
    # Exactly at the limits: 25 % DCIS is not "> 25 %", 14.9 mm is inside the indication.
    assert indication_notes(parse_procedure(_with("lesion.dcis_component_pct", 25))) == []
    assert indication_notes(parse_procedure(_with("lesion.diameter_mm", 14.9))) == []
