"""The accuracy benchmark's failures-by-kind table reads both simulators' truth (their words differ)."""

from __future__ import annotations

from benchmarks.accuracy import kind_table, nodule_kind, study_kind


def test_nodule_and_study_kinds_from_either_simulator():
    ours = {"shape": "lobulated", "placement": "straddling", "straddles_zone_edge": True, "curve_type": "plateau"}
    theirs = {"shape": "irregular", "placement": "outside", "straddles_edge": False, "curve": "washout"}
    assert nodule_kind(ours) == {"shape": "lobulated", "placement": "straddling", "straddles": True,
                                 "curve": "plateau"}
    assert nodule_kind(theirs)["curve"] == "washout" and not nodule_kind(theirs)["straddles"]
    clinical = {"fat_sat": {"baseline": True, "followup": False},
                "objects": [{"kind": "oil-cyst", "malignant": False}, {"kind": "nodule", "malignant": True}]}
    assert study_kind(clinical) == {"fat_sat_followup": False, "fat_sat_baseline": True, "mimics": ["oil-cyst"]}
    fat_sat = {"protocol": {"fat_sat": True}}
    independent = {"studies": {"baseline": fat_sat, "followup": fat_sat},
                   "confounder": {"mimics": [{"kind": "ring"}]}}
    assert study_kind(independent) == {"fat_sat_followup": True, "fat_sat_baseline": True,
                                       "mimics": ["fat necrosis ring"]}
    assert study_kind({})["fat_sat_followup"] is None


def test_kind_table_counts_each_nodule_and_study_in_its_groups():
    def row(residual, nodules, foci, fat, mimics=()):
        return {"status": "complete", "residual": residual, "nodules": nodules, "foci": foci,
                "fat_sat_followup": fat, "fat_sat_baseline": True, "mimics": list(mimics)}

    big = {"diameter_mm": 9.0, "found": False, "shape": "round", "placement": "straddling", "straddles": True,
           "curve": "persistent"}
    small = {**big, "diameter_mm": 4.0, "found": True}  # < 5 mm: not in the table
    rows = [row(True, [big, small], 0, False), row(False, [], 1, True, ["oil-cyst"]), row(False, [], 0, True)]
    table = "\n".join(kind_table(rows))
    assert "| follow-up no fat-sat (baseline differs) | 0 / 1 | - |" in table
    assert "| follow-up fat-sat | - | 1 / 2 |" in table
    assert "| look-alike oil-cyst | - | 1 / 1 |" in table
    assert "| no look-alike | - | 0 / 1 |" in table
    assert "| size 8-11 mm | 0 / 1 | - |" in table
