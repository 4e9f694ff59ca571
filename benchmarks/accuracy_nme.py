"""The accuracy benchmark's non-mass enhancement (NME) table (benchmarks/accuracy.py), from either
simulator's ``truth.json`` ``nme`` (absent: no NME drawn) and the analysis's
``Segmentation.nme`` (the report does not carry NME yet: it is read from the assessment).

* NME at the site found: a malignant NME of the truth is found when a suspicious NME was reported
  at the site whose long axis lies within ``NME_FOUND_WITHIN_MM`` of the truth's (the shortest
  distance between the two segments) and whose extent is within ``NME_FOUND_WITHIN_MM`` of the
  truth's extent; without start / end points in the truth, any suspicious NME at the site counts.
* ... with a suspicious finding on it: the truth's malignant NME found as above, or a suspicious
  focus at the site whose centre lies within ``FOCUS_ON_NME_MM`` of its long axis (a short clumped
  duct read as a mass: not the NME the lexicon asks for, but a finding that gets a targeted biopsy
  there); a clinical figure beside the strict one.
* NME reported in studies without residual disease: studies (complete analyses, truth without
  residual) with at least one suspicious NME at the site.
* By look-alike kind (probe track, thickened stretch of rim, patchy BPE): whether a suspicious NME
  was reported along the look-alike (within ``NME_FOUND_WITHIN_MM`` of its extent).
"""

from __future__ import annotations

from typing import Any

import numpy as np

NME_FOUND_WITHIN_MM = 10.0
FOCUS_ON_NME_MM = 5.0
SITE_BAND_MM = 10.0


def _segment_gap(a0, a1, b0, b1, samples: int = 41) -> float:
    """Shortest distance between segments a0-a1 and b0-b1 (sampled finely; mm)."""
    t = np.linspace(0.0, 1.0, samples)[:, None]
    pa = np.asarray(a0, float) + t * (np.asarray(a1, float) - np.asarray(a0, float))
    pb = np.asarray(b0, float) + t * (np.asarray(b1, float) - np.asarray(b0, float))
    return float(np.min(np.linalg.norm(pa[:, None, :] - pb[None, :, :], axis=-1)))


def reported_nme(assessment: Any) -> list[dict]:
    """The suspicious NME at the site of an analysis (empty without a segmentation)."""
    seg = getattr(assessment, "segmentation", None)
    return [{"start": np.asarray(m.start_lps, float).tolist(), "end": np.asarray(m.end_lps, float).tolist(),
             "extent_mm": float(m.extent_mm), "distribution": str(m.distribution), "internal": str(m.internal)}
            for m in getattr(seg, "nme", ()) if m.suspicious and m.distance_to_zone_edge_mm <= SITE_BAND_MM]


def _site_foci_centres(assessment: Any) -> list[np.ndarray]:
    """The centres of the suspicious foci at the site (empty without a segmentation)."""
    seg = getattr(assessment, "segmentation", None)
    return [np.asarray(f.centre_lps, float) for f in getattr(seg, "foci", ())
            if f.suspicious and f.distance_to_zone_edge_mm <= SITE_BAND_MM]


def _point_to_segment(p: np.ndarray, a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    ab = b - a
    t = float(np.clip((p - a) @ ab / max(float(ab @ ab), 1e-9), 0.0, 1.0))
    return float(np.linalg.norm(p - a - t * ab))


def nme_row(truth: dict, assessment: Any) -> dict:
    """The row's NME fields: each truth NME (kind, malignant, found / called suspicious, extent
    error of the reported NME that found it, whether a suspicious finding lies on it) and the
    number of suspicious NME reported."""
    reported = reported_nme(assessment)
    centres = _site_foci_centres(assessment)
    out = []
    for t in truth.get("nme") or []:
        rec: dict = {"kind": str(t.get("kind", "-")), "malignant": bool(t.get("malignant", False)),
                     "found": False, "extent_error_mm": None}
        start, end = t.get("start_lps_mm"), t.get("end_lps_mm")
        rec["focus_on_it"] = start is not None and end is not None and \
            any(_point_to_segment(c, start, end) <= FOCUS_ON_NME_MM for c in centres)
        for m in reported:
            if start is None or end is None:
                near = True
            else:
                near = _segment_gap(m["start"], m["end"], start, end) <= NME_FOUND_WITHIN_MM
            extent = t.get("extent_mm")
            err = None if extent is None else abs(m["extent_mm"] - float(extent))
            if near and (err is None or err <= NME_FOUND_WITHIN_MM or not rec["malignant"]):
                rec["found"] = True
                rec["extent_error_mm"] = err
                break
        out.append(rec)
    return {"nme": out, "nme_reported": len(reported)}


def nme_table(rows: list[dict]) -> list[str]:
    """The NME table (see the module)."""
    done = [r for r in rows if r["status"] == "complete"]
    analysable = [r for r in rows if r["status"] != "deferred"]
    malignant = [n for r in analysable for n in r.get("nme", []) if n["malignant"]]
    errs = [n["extent_error_mm"] for n in malignant if n["found"] and n["extent_error_mm"] is not None]
    neg = [r for r in done if not r["residual"]]
    lines = ["| measure | value | target |", "| --- | ---: | --- |",
             f"| NME at the site found (suspicious, within {NME_FOUND_WITHIN_MM:g} mm of its extent) | "
             f"{sum(n['found'] for n in malignant)} / {len(malignant)} | >= 90 % |",
             f"| ... extent error of those found, median | {np.median(errs):.1f} mm |" if errs else
             "| ... extent error of those found, median | - | |",
             f"| ... with a suspicious finding on it (that NME, or a mass within {FOCUS_ON_NME_MM:g} mm of its axis) | "
             f"{sum(n['found'] or n.get('focus_on_it', False) for n in malignant)} / {len(malignant)} | |",
             f"| NME reported in studies without residual disease | "
             f"{sum(r.get('nme_reported', 0) > 0 for r in neg)} / {len(neg)} | <= 5 % |"]
    kinds = sorted({n["kind"] for r in analysable for n in r.get("nme", []) if not n["malignant"]})
    for kind in kinds:
        studies = [r for r in neg if any(n["kind"] == kind for n in r.get("nme", []))]
        along = [n for r in neg for n in r.get("nme", []) if n["kind"] == kind and not n["malignant"]]
        lines.append(f"| look-alike {kind}: called suspicious NME along it / studies with it reporting any "
                     f"| {sum(n['found'] for n in along)} / {len(along)}; "
                     f"{sum(r.get('nme_reported', 0) > 0 for r in studies)} / {len(studies)} | 0 |")
    return lines
