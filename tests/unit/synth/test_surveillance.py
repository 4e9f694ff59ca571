"""The surveillance series generator: schedule, involution, recurrence, files and CLI."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from followup.cli import app
from followup.dicom import load_dce_study
from followup.procedure import load_procedure
from followup.synth.surveillance import (
    REDUCTION_12M,
    draw_series,
    involution_fraction,
    plateau_for,
)
from followup.synth.zone_findings import radial_extent


def test_involution_model_hits_the_drawn_12_month_reduction():
    for reduction in REDUCTION_12M:
        p = plateau_for(reduction)
        assert involution_fraction(1, p) == pytest.approx(1.0)
        assert involution_fraction(12, p) == pytest.approx(1.0 - reduction)
        months = [1, 6, 12, 24, 36]
        fractions = [involution_fraction(m, p) for m in months]
        assert all(b < a for a, b in itertools.pairwise(fractions))  # monotone
        assert fractions[-1] > 0.2  # stays measurable


def test_drawn_series_follow_the_schedule_and_recur_as_specified():
    """Pure draws for 80 seeds: 3-5 follow-ups at ~1, 6, 12, 24, 36 months, each with its own
    repositioning; the zone shrinks unless it recurs by growing; a recurrence starts at month 12
    or 24 and stays; a nodule sits on the zone's edge and grows."""
    kinds = {None: 0, "nodule": 0, "zone-growth": 0}
    for seed in range(80):
        s = draw_series(seed, n_post=4)
        kinds[s.recurrence_kind] += 1
        tps = s.time_points
        assert 3 <= len(tps) <= 5
        assert [tp.month for tp in tps] == [1, 6, 12, 24, 36][: len(tps)]
        days = [(tp.date - s.case.procedure_date).days for tp in tps]
        assert days[0] >= 21 and all(b > a for a, b in itertools.pairwise(days))
        assert len({tp.transform.translation.tobytes() for tp in tps}) == len(tps)
        if s.recurrence_month is not None:
            assert s.recurrence_month in (12, 24)
        for prev, tp in itertools.pairwise(tps):
            v0, v1 = np.prod(prev.zone.radii), np.prod(tp.zone.radii)
            if tp.recurrence == "zone-growth":
                assert v1 > 1.5 * v0
            else:
                assert v1 < v0
        for tp in tps:
            recurred = s.recurrence_month is not None and tp.month >= s.recurrence_month
            assert (tp.recurrence is not None) == recurred
            assert bool(tp.nodules) == (tp.recurrence == "nodule")
            for nod in tp.nodules:
                d = nod.centre - tp.zone.centre
                reach = radial_extent(tp.zone, d / np.linalg.norm(d))
                assert abs(np.linalg.norm(d) - reach) <= nod.diameter_mm / 2
        nodule_sizes = [tp.nodules[0].diameter_mm for tp in tps if tp.nodules]
        assert nodule_sizes == sorted(nodule_sizes)
    # a seed-chosen share recurs (over-sampled for testing), both kinds occur
    assert 15 <= kinds["nodule"] + kinds["zone-growth"] <= 50
    assert kinds["nodule"] > 0 and kinds["zone-growth"] > 0


def test_cli_writes_the_series_with_its_truth(tmp_path):
    out = tmp_path / "series"
    res = CliRunner().invoke(app, ["synth", "--scenario", "surveillance", "--out", str(out),
                                   "--seed", "3", "--vendor", "per-phase"])
    assert res.exit_code == 0, res.output
    truth = json.loads((out / "truth.json").read_text())
    record = load_procedure(out / "procedure.json")
    labels = [tp["label"] for tp in truth["time_points"]]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["baseline", *labels, "procedure.json", "truth.json"])
    assert truth["involution"]["reference"]["breast_cancer_figure"] is None
    assert "Kaufman" in truth["involution"]["reference"]["source"]
    base = load_dce_study(out / "baseline", decode_phases=1)
    uids = {base.study_uid}
    for tp in truth["time_points"]:
        study = load_dce_study(out / tp["label"], decode_phases=1)
        assert study.patient_id == record.patient_id == base.patient_id
        assert study.study_date.isoformat() == tp["study_date"]
        assert (study.study_date - record.procedure_date).days == tp["days_since_procedure"]
        uids.add(study.study_uid)
        zone = tp["ablation_zone"]
        assert zone["volume_ml"] == pytest.approx(4 / 3 * np.pi * np.prod(zone["radii_mm"]) / 1000, rel=1e-2)
    assert len(uids) == len(labels) + 1
    # deterministic: the same seed gives the same truth
    again = tmp_path / "again"
    CliRunner().invoke(app, ["synth", "--scenario", "surveillance", "--out", str(again),
                             "--seed", "3", "--vendor", "per-phase"])
    assert json.loads((again / "truth.json").read_text()) == truth
