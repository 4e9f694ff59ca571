"""No crash on an analysable study (issue 11, item 4): an internal error gives a failed report in
every format and ``followup analyze`` exits 0; the report model refuses non-JSON types."""

from __future__ import annotations

import json
import logging

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from followup import job
from followup.cli import app
from followup.pipelines import assess as A
from followup.reporting import model


def _boom(*args, **kwargs):
    raise RuntimeError("synthetic failure in the zone search")


def _analyze(pair, out):
    return CliRunner().invoke(app, ["analyze", "--baseline", str(pair / "baseline"),
                                    "--followup", str(pair / "followup"),
                                    "--procedure", str(pair / "procedure.json"), "--out", str(out)])


def _assert_failed_everywhere(out, needle):
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "failed"
    assert needle in report["reason"] and "Traceback" not in report["reason"]
    assert report["residual_probability"] is None and report["findings"] is None
    assert any(r["code"] == "radiologist-review" and needle in r["text"]
               for r in report["recommendations"])
    assert "failed" in (out / "report.html").read_text().lower()
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF")
    fhir = json.loads((out / "report.fhir.json").read_text())
    assert needle in json.dumps(fhir)
    import pydicom
    sr = pydicom.dcmread(out / report["outputs"]["sr"]["file"])
    assert needle in str(sr) or "failed" in str(sr).lower()
    return report


def test_internal_error_in_an_image_stage_gives_a_failed_report_and_exit_0(
        synth_pair, tmp_path, monkeypatch, caplog):
    pair = synth_pair("complete", 1)
    monkeypatch.setattr(A, "find_zone", _boom)
    with caplog.at_level(logging.ERROR, logger="followup.job"):
        result = _analyze(pair, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert result.exception is None and "Traceback" not in result.output
    assert "failed" in result.output
    report = _assert_failed_everywhere(tmp_path / "out", "RuntimeError: synthetic failure")
    # the traceback is logged at ERROR, without the patient's identifiers
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and errors[0].exc_info is not None
    assert report["patient"]["id"] not in errors[0].getMessage()


def test_a_report_that_cannot_be_rendered_falls_back_to_a_failed_one(synth_pair, tmp_path,
                                                                      monkeypatch):
    pair = synth_pair("complete", 1)
    real = job.render_html

    def html_fails_when_complete(report, images):
        if report.status == "complete":
            raise TypeError("Object of type bool is not JSON serializable")
        return real(report, images)

    monkeypatch.setattr(job, "render_html", html_fails_when_complete)
    result = _analyze(pair, tmp_path / "out")
    assert result.exit_code == 0, result.output
    _assert_failed_everywhere(tmp_path / "out", "TypeError: Object of type bool")


def test_internal_error_reason_is_one_short_line():
    reason = job.internal_error_reason("analysis", ValueError("a" * 500 + "\nsecond line"))
    assert reason.startswith("internal error in the analysis (ValueError: ")
    assert "second line" not in reason and len(reason) < 260


@pytest.mark.parametrize("bad", [object(), {1, 2}, "not a number", [1.0]])
def test_report_model_refuses_non_json_types_in_a_numeric_field(bad):
    with pytest.raises(ValidationError):
        model.Similarity(mutual_information=bad, local_ncc=0.5)


def test_report_model_refuses_non_json_types_in_a_nested_field():
    with pytest.raises(ValidationError):
        model.MotionStep(phase=1, shift_mm=object(), realigned=True)
    with pytest.raises(ValidationError):
        model.Note(code="x", text={"a", "b"})
