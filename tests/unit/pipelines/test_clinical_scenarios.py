"""The safety rules of the conclusion, held on the clinical scenario table and on a sweep of
records (issue 21: never reassure falsely; an error falls on the side of a biopsy)."""

import itertools

import pytest

from followup import evidence as ev, record_rules
from followup.pipelines.birads import Category, band, categorise
from followup.pipelines.conclusion import category, recommendations
from followup.pipelines.probability import FocusEvidence, ImagingEvidence, residual_probability
from followup.testing.clinical_scenarios import SCENARIOS, Scenario, focus, record, run, run_one

OUTCOMES = run()
SUSPICIOUS = {Category.SUSPICIOUS_LOW, Category.SUSPICIOUS_MODERATE, Category.SUSPICIOUS_HIGH,
              Category.HIGHLY_SUGGESTIVE}


def codes(notes):
    return [n.code for n in notes]


def test_the_table_has_the_canonical_cases():
    assert len(SCENARIOS) >= 12
    names = " | ".join(s.name for s in SCENARIOS)
    for words in ("8 mm IDC, negative", "12 mm IDC, negative", "15 mm IDC, negative", "lobular", "intermediate grade",
                  "pure DCIS", "washout", "plateau", "persistent", "single freeze", "12 months", "24 months, new"):
        assert words in names


@pytest.mark.parametrize("o", OUTCOMES, ids=[o.scenario.name for o in OUTCOMES])
def test_no_category_below_4_and_no_calm_wording_above_2_percent(o):
    if o.probability.probability > ev.BIRADS_3_MAX:
        assert o.birads.category in SUSPICIOUS and not o.birads.category.reassuring
        assert "imaging-follow-up" not in codes(o.recommendations)
        assert not any("no biopsy indication" in n.text.lower() for n in o.recommendations)
        assert "peripheral-biopsy" in codes(o.recommendations)


@pytest.mark.parametrize("o", OUTCOMES, ids=[o.scenario.name for o in OUTCOMES])
def test_every_contraindication_shows_its_banner(o):
    expected = {r.code for r in record_rules.applicable(o.scenario.record) if r.contraindication}
    assert {n.code for n in o.banner} == expected


@pytest.mark.parametrize("o", OUTCOMES, ids=[o.scenario.name for o in OUTCOMES])
def test_in_situ_dcis_or_mixed_always_gets_peripheral_biopsy(o):
    les = o.scenario.record.lesion
    if les.dcis_component_pct > 0 or les.insitu_grade or les.histology in ("DCIS", "mixed"):
        biopsy = [n for n in o.recommendations if n.code == "peripheral-biopsy"]
        assert biopsy and "situ" in biopsy[0].text


@pytest.mark.parametrize("o", OUTCOMES, ids=[o.scenario.name for o in OUTCOMES])
def test_every_suspicious_finding_gets_category_4_and_a_targeted_biopsy(o):
    if o.scenario.finding:
        assert o.birads.category in SUSPICIOUS
        assert "targeted-biopsy" in codes(o.recommendations)


def test_the_bug_of_an_intermediate_grade_in_situ_component_at_0_percent_is_fixed():
    o = run_one(Scenario("x", record(12.0, insitu_grade="intermediate")))
    biopsy = next(n for n in o.recommendations if n.code == "peripheral-biopsy")
    assert "intermediate grade" in biopsy.text


def test_pure_dcis_is_extensive_in_situ_disease_whatever_the_percentage():
    o = run_one(Scenario("x", record(12.0, "DCIS", 0.0)))
    assert "extensive-dcis" in codes(o.banner)


def test_sweep_of_records_and_reads_never_reassures_above_2_percent():
    """Every size 5-30 mm, histology, in-situ, cycles, with a negative read or a finding."""
    for d, hist, insitu, cycles, finding in itertools.product(
            (5, 8, 11, 14.9, 15, 20, 30), ("IDC", "ILC", "DCIS", "mixed"), (None, "low", "high"), (1, 2),
            (None, ("persistent", 6.0), ("washout", 4.0))):
        rec = record(d, hist, 0.0, insitu, cycles)
        foci = [focus(*finding)] if finding else []
        im = ImagingEvidence(tuple(FocusEvidence(str(f.curve_type), f.largest_diameter_mm, 0.0) for f in foci))
        p = residual_probability(rec, im, 30)
        b = category(p, foci, imaging_used=True, benign_appearance=not foci)
        recs = recommendations(rec, p, b, foci)
        if p.probability > ev.BIRADS_3_MAX or foci:
            assert b.category in SUSPICIOUS, (d, hist, insitu, cycles, finding)
            assert "imaging-follow-up" not in codes(recs)
        if insitu or hist in ("DCIS", "mixed", "ILC"):
            assert "peripheral-biopsy" in codes(recs)


@pytest.mark.parametrize("p,cat", [(0.0, "3"), (0.02, "3"), (0.0201, "4A"), (0.10, "4A"), (0.1001, "4B"),
                                   (0.5, "4B"), (0.51, "4C"), (0.949, "4C"), (0.95, "5")])
def test_birads_bands(p, cat):
    assert band(p).value == cat


def test_benign_and_probably_benign_only_at_2_percent_or_less():
    b = categorise("complete", 0.015, imaging_used=True, suspicious_at_site=False, benign_appearance=True,
                   confidence_normal=True)
    assert b.category is Category.BENIGN and not b.category.tissue_diagnosis
    b = categorise("complete", 0.015, imaging_used=True, suspicious_at_site=False, benign_appearance=False,
                   confidence_normal=True)
    assert b.category is Category.PROBABLY_BENIGN
    b = categorise("complete", 0.015, imaging_used=True, suspicious_at_site=True, benign_appearance=False,
                   confidence_normal=True)
    assert b.category is Category.SUSPICIOUS_LOW and b.category.tissue_diagnosis
    b = categorise("complete", 0.015, imaging_used=False, suspicious_at_site=False, benign_appearance=True,
                   confidence_normal=False)
    assert b.category is Category.INCOMPLETE
    assert categorise("deferred", None, imaging_used=False, suspicious_at_site=False, benign_appearance=False,
                      confidence_normal=False, repeat_from="2026-02-01").category is Category.INCOMPLETE
