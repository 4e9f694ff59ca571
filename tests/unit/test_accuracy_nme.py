"""The accuracy benchmark's NME table: truth NME found along its extent, look-alikes called
suspicious, studies without residual reporting NME; a truth without ``nme`` counts none."""

from __future__ import annotations

from types import SimpleNamespace

from benchmarks.accuracy import case_list
from benchmarks.accuracy_nme import nme_row, nme_table


def _assessment(*nmes, foci=()):
    """NME as (start, end, extent, suspicious); ``foci``: (centre, suspicious) at the site."""
    return SimpleNamespace(segmentation=SimpleNamespace(nme=[SimpleNamespace(
        start_lps=s, end_lps=e, extent_mm=x, distribution="linear", internal="clumped", suspicious=sus,
        distance_to_zone_edge_mm=1.0) for s, e, x, sus in nmes], foci=[SimpleNamespace(
            centre_lps=c, suspicious=sus, distance_to_zone_edge_mm=0.0) for c, sus in foci]))


DCIS = {"kind": "dcis", "malignant": True, "start_lps_mm": [0, 0, 0], "end_lps_mm": [0, -20, 0], "extent_mm": 20.0}
TRACK = {"kind": "probe-track", "malignant": False, "start_lps_mm": [30, 0, 0], "end_lps_mm": [30, -40, 0],
         "extent_mm": 40.0}


def test_nme_found_along_its_extent_and_not_elsewhere():
    along = nme_row({"nme": [DCIS]}, _assessment(([1, -2, 0], [1, -19, 0], 18.0, True)))
    assert along["nme"][0]["found"] and abs(along["nme"][0]["extent_error_mm"] - 2.0) < 1e-9
    far = nme_row({"nme": [DCIS]}, _assessment(([25, 0, 0], [25, -20, 0], 20.0, True)))
    assert not far["nme"][0]["found"]
    benign_only = nme_row({"nme": [DCIS]}, _assessment(([1, -2, 0], [1, -19, 0], 18.0, False)))
    assert not benign_only["nme"][0]["found"] and benign_only["nme_reported"] == 0
    assert nme_row({}, None) == {"nme": [], "nme_reported": 0}  # a truth without the key, no analysis


def test_a_suspicious_mass_on_the_duct_counts_as_a_finding_on_it_not_as_the_nme():
    on = nme_row({"nme": [DCIS]}, _assessment(foci=[([3, -12, 0], True)]))["nme"][0]
    assert on["focus_on_it"] and not on["found"]
    beside = nme_row({"nme": [DCIS]}, _assessment(foci=[([6, -12, 0], True), ([0, -10, 0], False)]))["nme"][0]
    assert not beside["focus_on_it"]  # 6 mm from its axis; the one on it is not suspicious


def test_nme_table_counts():
    def row(residual, truth, *nmes):
        return {"status": "complete", "residual": residual, **nme_row({"nme": truth}, _assessment(*nmes))}

    rows = [row(True, [DCIS], ([0, -1, 0], [0, -21, 0], 20.0, True)),
            row(True, [DCIS]),
            {"status": "complete", "residual": True,
             **nme_row({"nme": [DCIS]}, _assessment(foci=[([0, -5, 1], True)]))},
            row(False, [TRACK], ([30, -2, 0], [30, -30, 0], 28.0, True)),
            row(False, [TRACK]),
            row(False, [])]
    text = "\n".join(nme_table(rows))
    assert "| 1 / 3 | >= 90 % |" in text  # one of three DCIS found as NME
    assert "or a mass within 5 mm of its axis) | 2 / 3 |" in text  # and one more with a mass on it
    assert "NME reported in studies without residual disease | 1 / 3 |" in text
    assert "look-alike probe-track: called suspicious NME along it / studies with it reporting any | 1 / 2; 1 / 2" \
        in text


def test_case_list_keeps_to_the_simulators_scenarios():
    ours = case_list(60)
    assert len(ours) == 60 and sum(s == "dcis-nme" for s, _ in ours) == 7
    theirs = case_list(60, scenarios=("residual", "complete", "confounder", "early"))
    assert len(theirs) == 60 and {s for s, _ in theirs} == {"residual", "complete", "confounder", "early"}
