"""Accuracy and stress benchmark of ``followup analyze`` on synthetic cases no test or tuning uses.

Cases: ``followup synth --variation wide`` (one seed draws the anatomy, both scanners'
acquisitions and layouts, repositioning 0-30 mm / 0-15 deg, deformation 0-8 mm, phases,
nodules 3-15 mm, benign confounders; see followup/synth/scenario.py), seeds 90000 and up (tests use
small seeds, the old accuracy set 1000+, registration tuning 5000-5999), in a fixed scenario mix.
``--variation standard`` runs the standard generator on the same seeds instead; ``--variation clinical``
the wide draw plus fat suppression per study, 1.5/3 T, anisotropic voxels, dose jitter, fat-necrosis
mimics and lobulated nodules across the zone edge (followup/synth/clinical.py; truth.json ``objects``).

Tables:
(a) accuracy: crashes (exception, no report), failed reports, imaging evidence used (an MRI
    likelihood ratio among the report's drivers), tumour-centre error median / p95 (mapped baseline
    tumour centre against the truth in the follow-up), residual nodules >= 5 mm found as a
    suspicious focus within 5 mm of their centre, suspicious foci in studies without residual, AUC
    of the MRI likelihood ratio (residual vs none; 1 where imaging was not used), the ablation
    zone's volume against the truth's (``ablation_zone`` or, independent simulator, ``zone``), and
    how well the registration's ``poor`` label tells failed (> 4 mm) from converged (< 2 mm)
    registrations;
(b) stress: tumour-centre error median / p95 and imaging evidence used by displacement band
    (translation norm 0-10, 10-20, 20-30 mm; largest per-axis rotation 0-8, 8-15 deg), by layout
    pair and by tumour size, beside SimpleITK's and elastix's registration of the same pre-contrast
    phases (each skipped with a note when it does not import):
    * SimpleITK: Euler3D, Mattes MI (32 bins), CenteredTransformInitializer (MOMENTS), then a
      multi-start: 7 starting rotations (none, +-12 deg about each axis) each run at 8 mm, the
      best (lowest metric) refined at 4 and 2 mm (regular-step gradient descent);
    * itk-elastix: its default ``rigid`` map (Euler, 4 levels, Advanced Mattes MI), centre-of-
      gravity initialisation; one start (said in the table).

(c) quality figures: for every analysable case, the figures that judge an alignment by itself
    (local NCC without the treated region, normalised MI: ``register.alignment_figures``) and the
    ``poor`` label they give, for our alignment and for ``PERTURBED_PER_CASE`` alignments made to
    fail on purpose (ours composed with a drawn 4-30 mm / 0-15 deg rigid error about the lesion):
    their ROC (converged < 2 mm against failed > 4 mm), false alarms and misses by error band.

``--simulator independent`` draws the cases from benchmarks/independent_sim instead: a simulator
written from physics and the literature without reading followup/synth (its own anatomy, Tofts/SPGR
kinetics, nodule shapes, fat-necrosis mimics, layouts), seeds 96000 and up, never used for tuning;
results in results/accuracy-independent.md. The same tables, read from its truth.json.

The analysis was developed on seeds 70000-79999 (``--first-seed 70000``: tuning); the default
range (90000+) and a second range (91000+, results/accuracy-fresh-91000.md) are only measured.

Usage: .venv/bin/python benchmarks/accuracy.py [--cases 60] [--size small] [--variation wide]
       [--first-seed N] [--no-peers] [--no-quality] [--keep DIR] [--rows-json FILE]
Writes benchmarks/results/accuracy.md and prints it. 60 small wide cases take about 10 min on
2 cores (generation ~4 s, our analysis ~3 s, SimpleITK ~3 s, elastix ~1 s, quality arm ~1 s a case).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from followup.job import run_job
from followup.procedure import load_procedure
from followup.synth import generate_pair
from followup.testing.bench import write_results

try:
    from benchmarks import independent_sim
    from benchmarks.accuracy_nme import nme_row, nme_table
except ModuleNotFoundError:  # run as a script (python benchmarks/accuracy.py): benchmarks/ is on sys.path
    import independent_sim  # type: ignore[no-redef,import-not-found]
    from accuracy_nme import nme_row, nme_table  # type: ignore[no-redef,import-not-found]

INDEPENDENT_FIRST_SEED = independent_sim.FIRST_BENCHMARK_SEED

HERE = Path(__file__).resolve().parent
FIRST_SEED = 90000
VENDORS = ("per-phase", "single-series", "sagittal")
# scenario mix: residual, complete, confounder, early (early: deferral is checked, no registration),
# dcis-nme (DCIS-like non-mass enhancement from the zone: the NME table); a simulator without a
# scenario of the mix draws the others in their shares (case_list)
MIX = (("residual", 0.33), ("complete", 0.24), ("confounder", 0.23), ("early", 0.08), ("dcis-nme", 0.12))
TRANSLATION_BANDS = ((0, 10), (10, 20), (20, 30.001))
ROTATION_BANDS = ((0, 8), (8, 15.001))
SIZE_BANDS = ((0, 11), (11, 13), (13, 99))  # tumour diameter, mm
FOUND_WITHIN_MM = 5.0
PERTURBED_PER_CASE = 2
TUNING_SEEDS = "70000-79999"  # wide cases the analysis was developed on; the benchmark never draws them
START_ROTATIONS_DEG = ((0, 0, 0), (12, 0, 0), (-12, 0, 0), (0, 12, 0), (0, -12, 0), (0, 0, 12), (0, 0, -12))


def case_list(n: int, first_seed: int = FIRST_SEED,
              scenarios: tuple[str, ...] | None = None) -> list[tuple[str, int]]:
    """``n`` cases in the scenario mix (only ``scenarios`` where given: the simulator's own),
    interleaved, seeds first_seed, first_seed + 1, ..."""
    mix = [(s, share) for s, share in MIX if scenarios is None or s in scenarios]
    counts = {s: max(1, int(round(n * share / sum(w for _, w in mix)))) for s, share in mix}
    while sum(counts.values()) > n:
        counts[max(counts, key=lambda k: counts[k])] -= 1
    while sum(counts.values()) < n:
        counts["residual"] += 1
    order = []
    left = dict(counts)
    while any(left.values()):
        for s, _ in mix:
            if left[s]:
                order.append(s)
                left[s] -= 1
    return [(s, first_seed + i) for i, s in enumerate(order)]


def auc(scores_pos: list[float], scores_neg: list[float]) -> float:
    if not scores_pos or not scores_neg:
        return float("nan")
    wins = sum((p > q) + 0.5 * (p == q) for p in scores_pos for q in scores_neg)
    return wins / (len(scores_pos) * len(scores_neg))


def _dist(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a, float) - np.asarray(b, float)))


# ----------------------------------------------------------------------------- peers


def _volume_image(sitk, vol):
    img = sitk.GetImageFromArray(np.ascontiguousarray(vol.data.T).astype(np.float32))
    sp = vol.spacing
    img.SetSpacing([float(s) for s in sp])
    img.SetOrigin([float(v) for v in vol.affine[:3, 3]])
    img.SetDirection((vol.affine[:3, :3] / sp).flatten().tolist())
    return img


def simpleitk_map(fixed, moving, centre_b: np.ndarray) -> np.ndarray:
    """SimpleITK multi-start rigid registration; the baseline centre mapped into the follow-up."""
    import SimpleITK as sitk

    f, m = _volume_image(sitk, fixed), _volume_image(sitk, moving)
    init = sitk.CenteredTransformInitializer(f, m, sitk.Euler3DTransform(),
                                             sitk.CenteredTransformInitializerFilter.MOMENTS)

    def method(shrinks, iterations):
        reg = sitk.ImageRegistrationMethod()
        reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
        reg.SetMetricSamplingStrategy(reg.RANDOM)
        reg.SetMetricSamplingPercentage(0.2, seed=1)
        reg.SetInterpolator(sitk.sitkLinear)
        reg.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-3,
                                                     numberOfIterations=iterations,
                                                     relaxationFactor=0.5)
        reg.SetOptimizerScalesFromPhysicalShift()
        reg.SetShrinkFactorsPerLevel(shrinks)
        reg.SetSmoothingSigmasPerLevel([s / 2.0 for s in shrinks])
        reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
        return reg

    sp = float(min(fixed.spacing))
    coarse = max(1, round(8.0 / sp))
    best = None
    for angles in START_ROTATIONS_DEG:
        t = sitk.Euler3DTransform(init)
        t.SetRotation(*np.deg2rad(angles))
        reg = method([coarse], 60)
        reg.SetInitialTransform(t, inPlace=True)
        reg.Execute(f, m)
        value = reg.GetMetricValue()
        if best is None or value < best[0]:
            best = (value, t)
    reg = method([max(1, round(4.0 / sp)), max(1, round(2.0 / sp))], 150)
    assert best is not None  # START_ROTATIONS_DEG is not empty
    t = best[1]
    reg.SetInitialTransform(t, inPlace=True)
    reg.Execute(f, m)
    return np.array(t.GetInverse().TransformPoint(tuple(float(v) for v in centre_b)))


def elastix_map(fixed, moving, centre_b: np.ndarray) -> np.ndarray:
    """itk-elastix: default rigid map, centre-of-gravity initialisation (one start)."""
    import itk

    def image(vol):
        img = itk.image_from_array(np.ascontiguousarray(vol.data.T).astype(np.float32))
        sp = vol.spacing
        img.SetSpacing([float(s) for s in sp])
        img.SetOrigin([float(v) for v in vol.affine[:3, 3]])
        img.SetDirection(itk.matrix_from_array(np.ascontiguousarray(vol.affine[:3, :3] / sp)))
        return img

    f, m = image(fixed), image(moving)
    params = itk.ParameterObject.New()
    rigid = params.GetDefaultParameterMap("rigid")
    rigid["AutomaticTransformInitialization"] = ["true"]
    rigid["AutomaticTransformInitializationMethod"] = ["CenterOfGravity"]
    # different fields of view overlap little at the start: accept few valid samples (elastix's
    # default gives up below 25 %), as our registration and SimpleITK's do
    rigid["RequiredRatioOfValidSamples"] = ["0.05"]
    params.AddParameterMap(rigid)
    _, result = itk.elastix_registration_method(f, m, parameter_object=params, log_to_console=False)
    pm = result.GetParameterMap(0)
    p = np.array([float(v) for v in pm["TransformParameters"]])
    c = np.array([float(v) for v in pm["CenterOfRotationPoint"]])
    ax, ay, az = p[:3]  # ITK Euler3D, ComputeZYX false: R = Rz Rx Ry
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    a = rz @ rx @ ry
    # fixed (follow-up) x -> moving (baseline) a (x - c) + c + t; invert for the baseline centre
    return np.linalg.solve(a, np.asarray(centre_b, float) - c - p[3:6]) + c


PeerMap = Callable[[Any, Any, np.ndarray], np.ndarray]  # (follow-up, baseline, baseline centre) -> LPS


def available_peers() -> tuple[list[tuple[str, PeerMap]], list[str]]:
    peers: list[tuple[str, PeerMap]] = []
    notes: list[str] = []
    try:
        import SimpleITK  # noqa: F401
        peers.append(("SimpleITK", simpleitk_map))
    except ImportError as exc:
        notes.append(f"SimpleITK skipped: {exc}")
    try:
        import itk
        if not hasattr(itk, "ParameterObject"):
            raise ImportError("itk is installed without itk-elastix")
        peers.append(("elastix", elastix_map))
    except ImportError as exc:
        notes.append(f"elastix skipped: {exc}")
    return peers, notes


# ----------------------------------------------------------------------------- one case


def generate_independent(pair: Path, scenario: str, seed: int) -> None:
    """The case of ``scenario`` and ``seed`` from the independently written simulator
    (benchmarks/independent_sim; ``--size`` and ``--variation`` do not apply: its volumes are
    benchmark-sized and its one variation is wide)."""
    independent_sim.generate_case(pair, seed, scenario)


def run_case(workdir: Path, scenario: str, seed: int, size: str, variation: str, peers,
             quality_arm: bool = True, simulator: str = "ours") -> dict:
    pair = workdir / f"{scenario}-{seed}"
    vendor = None if variation != "standard" else VENDORS[seed % len(VENDORS)]
    if not (pair / "truth.json").exists():
        if simulator == "independent":
            generate_independent(pair, scenario, seed)
        else:
            generate_pair(pair, scenario, seed, vendor, size, variation)
    truth = json.loads((pair / "truth.json").read_text())
    disp = truth["transforms"].get("displacement") or {
        "translation_norm_mm": truth["transforms"]["translation_mm"],
        "rotation_max_axis_deg": truth["transforms"]["rotation_deg"]}
    layouts = truth.get("layouts") or {"baseline": truth["vendor"], "followup": truth["vendor"]}
    row = {"scenario": scenario, "seed": seed, "residual": truth["residual"],
           "layouts": f"{layouts['baseline']} > {layouts['followup']}",
           "translation_mm": disp["translation_norm_mm"], "rotation_deg": disp["rotation_max_axis_deg"],
           "tumour_mm": truth["tumour"]["diameter_mm"], "status": "crash", "crash": None,
           "error_mm": None, "ncc": None, "imaging": False, "lr": 1.0, "p": None, "quality": None,
           "nodules": [{"diameter_mm": n["diameter_mm"], "found": False, "gap_mm": gap, **nodule_kind(n)}
                       for n, gap in zip(truth["nodules"], nodule_gaps(truth["nodules"]), strict=True)],
           **study_kind(truth), "nme": [], "nme_reported": 0,
           "foci": 0, "seconds": None, "peers": {}, "quality_arm": [],
           "zone_truth_ml": (truth.get("ablation_zone") or truth.get("zone") or {}).get("volume_ml"),
           "zone_ml": None}
    t0 = time.perf_counter()
    try:
        out = run_job(pair / "followup", pair / "baseline", load_procedure(pair / "procedure.json"),
                      pair / "out")
        r = out.report.model_dump(mode="json")
    except Exception as exc:  # noqa: BLE001 - a crash is what the benchmark counts
        row["crash"] = f"{type(exc).__name__}: {str(exc)[:150]}"
        traceback.print_exc()
        return row
    finally:
        row["seconds"] = time.perf_counter() - t0
    row["status"], row["p"], row["reason"] = r["status"], r["residual_probability"], r["reason"]
    row.update(nme_row(truth, out.assessment))
    seg = out.assessment.segmentation if out.assessment is not None else None
    if seg is not None:
        row["zone_ml"] = seg.zone.volume_ml
    mri = [d for d in r["drivers"] if d["name"].lower().startswith("mri")]
    row["imaging"] = bool(mri)
    row["lr"] = float(np.prod([d["odds_factor"] for d in mri])) if mri else 1.0
    reg = r.get("registration")
    if reg is not None:
        row["quality"] = reg["quality"]
        row["ncc"] = (reg.get("similarity_after") or {}).get("local_ncc")
        if reg.get("tumour_center_followup_lps_mm") is not None:
            row["error_mm"] = _dist(reg["tumour_center_followup_lps_mm"], truth["tumour"]["centre_followup_lps_mm"])
    if r["status"] == "complete" and r.get("findings"):
        foci = r["findings"]["suspicious_foci"]
        row["foci"] = len(foci)
        for n, t in zip(row["nodules"], truth["nodules"], strict=True):
            n["found"] = any(_dist(f["center_lps_mm"], t["centre_followup_lps_mm"]) <= FOUND_WITHIN_MM for f in foci)
    if r["status"] != "deferred" and (peers or quality_arm):
        from followup.dicom import load_dce_study

        fu = load_dce_study(pair / "followup", decode_phases=1).phases[0].volume
        ba = load_dce_study(pair / "baseline", decode_phases=1).phases[0].volume
        centre_b = np.asarray(truth["tumour"]["centre_baseline_lps_mm"], float)
        if quality_arm and reg is not None and reg.get("followup_to_baseline_affine") is not None:
            row["quality_arm"] = quality_samples(fu, ba, np.asarray(reg["followup_to_baseline_affine"], float),
                                                 centre_b, np.asarray(truth["tumour"]["centre_followup_lps_mm"],
                                                                      float), seed)
        for name, fn in peers:
            t = time.perf_counter()
            try:
                err = _dist(fn(fu, ba, centre_b), truth["tumour"]["centre_followup_lps_mm"])
            except Exception as exc:  # noqa: BLE001 - a peer's failure is a result too
                print(f"  {name} failed: {type(exc).__name__}: {exc}", flush=True)
                err = float("inf")
            row["peers"][name] = {"error_mm": err, "seconds": time.perf_counter() - t}
    return row


def nodule_kind(n: dict) -> dict:
    """What a nodule is, in either simulator's truth (failures by kind): shape, placement, whether
    it straddles the zone's edge, its curve."""
    curve = n.get("curve_type") or n.get("curve") or n.get("kinetics")
    return {"shape": n.get("shape") or "round", "placement": n.get("placement") or "-",
            "straddles": bool(n.get("straddles_zone_edge", n.get("straddles_edge", False))),
            "curve": curve if isinstance(curve, str) else "-"}


def study_kind(truth: dict) -> dict:
    """Whether each study was fat suppressed (None: not drawn) and the benign look-alikes at the
    site, in either simulator's truth."""
    fat = truth.get("fat_sat") or {}
    studies = truth.get("studies") or {}
    both = ("baseline", "followup")
    if not fat and isinstance(studies, dict) and all("protocol" in studies.get(k, {}) for k in both):
        fat = {k: studies[k]["protocol"].get("fat_sat") for k in ("baseline", "followup")}
    mimics = [o.get("kind", "-") for o in truth.get("objects", []) if not o.get("malignant", False)]
    mimics += [f"fat necrosis {m.get('kind', '-')}" for m in ((truth.get("confounder") or {}).get("mimics") or [])]
    return {"fat_sat_followup": fat.get("followup"), "fat_sat_baseline": fat.get("baseline"), "mimics": mimics}


def kind_table(rows: list[dict]) -> list[str]:
    """Residual nodules >= 5 mm found, and studies without residual called suspicious, by kind."""
    analysable = [r for r in rows if r["status"] != "deferred"]
    big = [(r, n) for r in analysable for n in r["nodules"] if n["diameter_mm"] >= 5]
    neg = [r for r in analysable if r["status"] == "complete" and not r["residual"]]

    def fat(r: dict) -> str:
        f, b = r.get("fat_sat_followup"), r.get("fat_sat_baseline")
        if f is None:
            return "not drawn"
        return ("fat-sat" if f else "no fat-sat") + (" (baseline differs)" if b is not None and b != f else "")

    lines = ["| kind | residual nodules >= 5 mm found | studies without residual with a suspicious focus |",
             "| --- | ---: | ---: |"]
    groups: dict[str, tuple[list, list]] = {}
    for r, n in big:
        for key in (f"follow-up {fat(r)}", f"shape {n.get('shape', '-')}", f"placement {n.get('placement', '-')}",
                    "straddling the edge" if n.get("straddles") else "not straddling",
                    f"curve {n.get('curve', '-')}",
                    f"size {'5-8' if n['diameter_mm'] < 8 else '8-11' if n['diameter_mm'] < 11 else '>= 11'} mm"):
            groups.setdefault(key, ([], []))[0].append(n["found"])
    for r in neg:
        for key in [f"follow-up {fat(r)}"] + [f"look-alike {k}" for k in sorted(set(r.get("mimics", [])))] \
                + ([] if r.get("mimics") else ["no look-alike"]):
            groups.setdefault(key, ([], []))[1].append(r["foci"] > 0)
    for key in sorted(groups):
        found, fp = groups[key]
        lines.append(f"| {key} | {f'{sum(found)} / {len(found)}' if found else '-'} | "
                     f"{f'{sum(fp)} / {len(fp)}' if fp else '-'} |")
    return lines


def nodule_gaps(nodules: list[dict]) -> list[float | None]:
    """Each nodule's distance to the nearest other nodule of the study, surface to surface (negative:
    they overlap by that much); None when it is alone."""
    out: list[float | None] = []
    for i, a in enumerate(nodules):
        gaps = [_dist(a["centre_followup_lps_mm"], b["centre_followup_lps_mm"])
                - (a["diameter_mm"] + b["diameter_mm"]) / 2 for j, b in enumerate(nodules) if j != i]
        out.append(min(gaps) if gaps else None)
    return out


def _by_neighbour(big: list[dict]) -> str:
    """Nodules >= 5 mm found, by their distance to the nearest other nodule (failures by kind)."""
    kinds = (("> 3 mm from any other", lambda g: g is None or g > 3),
             ("0-3 mm from another", lambda g: g is not None and 0 <= g <= 3),
             ("overlapping another", lambda g: g is not None and g < 0))
    return "; ".join(f"{label} {sum(n['found'] for n in sel)} / {len(sel)}"
                     for label, test in kinds for sel in [[n for n in big if test(n.get("gap_mm"))]])


def _rotation(axis: np.ndarray, deg: float) -> np.ndarray:
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    t = np.deg2rad(deg)
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k


def quality_samples(fu, ba, matrix: np.ndarray, centre_b: np.ndarray, truth_fu: np.ndarray,
                    seed: int) -> list[dict]:
    """The quality figures (:func:`followup.pipelines.registration.quality.alignment_figures`) and the
    ``poor`` label they give, for our final alignment and for ``PERTURBED_PER_CASE`` deliberately
    wrong ones (ours composed with a rigid error drawn about the lesion: 4-30 mm, 0-15 deg), each
    with its tumour-centre error against the truth: a stress set of failed registrations on which
    the figures must tell failed from converged (this benchmark's registrations rarely fail)."""
    from followup.pipelines.registration.quality import alignment_figures, quality_reasons

    rng = np.random.default_rng(seed + 7_000_000)
    lesion_fu = np.linalg.inv(matrix) @ np.append(centre_b, 1.0)
    matrices = [matrix]
    for _ in range(PERTURBED_PER_CASE):
        d = rng.normal(size=3)
        shift = d / np.linalg.norm(d) * rng.uniform(4.0, 30.0)
        rot = _rotation(rng.normal(size=3), rng.uniform(0.0, 15.0))
        p = np.eye(4)  # follow-up -> follow-up: turn about the lesion, then shift
        p[:3, :3] = rot
        p[:3, 3] = lesion_fu[:3] - rot @ lesion_fu[:3] + shift
        matrices.append(matrix @ p)
    out = []
    for k, m in enumerate(matrices):
        fig = alignment_figures(fu, ba, m, centre_b)
        mapped = (np.linalg.inv(m) @ np.append(centre_b, 1.0))[:3]
        full = {"start_spread_mm": 0.0, "local_correction_mm": 0.0, "max_scale_deviation": 0.0, **fig}
        out.append({"perturbed": k > 0, "error_mm": _dist(mapped, truth_fu), "local_ncc": fig["local_ncc"],
                    "local_nmi": fig["local_nmi"],
                    "normalised_mi": fig["normalised_mi"], "poor": bool(quality_reasons(full))})
    return out


def quality_table(rows: list[dict]) -> list[str]:
    """ROC of the quality figures: converged (< 2 mm) against failed (> 4 mm) alignments."""
    samples = [q for r in rows for q in r.get("quality_arm", [])]
    conv = [q for q in samples if q["error_mm"] < 2]
    fail = [q for q in samples if q["error_mm"] > 4]
    if not conv or not fail:
        return ["(no quality samples: run without --no-quality)"]

    def finite(v: float) -> float:
        return v if np.isfinite(v) else -1.0

    lines = [
        f"{len(conv)} converged alignments (error < 2 mm: ours, unperturbed) against {len(fail)} failed ones "
        f"(error > 4 mm: ours composed with a drawn rigid error, {PERTURBED_PER_CASE} a case). "
        "`poor` is the label the figures alone give (local normalised MI < `MIN_LOCAL_NMI` or global "
        "normalised MI < `MIN_NORMALISED_MI`; the start spread and local correction "
        "need a run of the registration and are left out here).",
        "",
        "| measure | value | target |",
        "| --- | ---: | --- |",
        f"| AUC of the local normalised MI (judges), converged vs failed | "
        f"{auc([finite(q['local_nmi']) for q in conv], [finite(q['local_nmi']) for q in fail]):.3f} | separates |",
        f"| AUC of the local NCC (reported only), converged vs failed | "
        f"{auc([finite(q['local_ncc']) for q in conv], [finite(q['local_ncc']) for q in fail]):.3f} | |",
        f"| AUC of the normalised MI, converged vs failed | "
        f"{auc([q['normalised_mi'] for q in conv], [q['normalised_mi'] for q in fail]):.3f} | |",
        f"| `poor` on converged: false alarms | {sum(q['poor'] for q in conv)} / {len(conv)} | 0 |",
    ]
    for lo, hi in ((4, 8), (8, 15), (15, 30.001)):
        sel = [q for q in fail if lo <= q["error_mm"] < hi]
        lines.append(f"| `good` on failed, error {lo}-{hi:.0f} mm: misses | "
                     f"{sum(not q['poor'] for q in sel)} / {len(sel)} | 0 |")
    return lines


# ----------------------------------------------------------------------------- tables


def _stats(errs: list[float]) -> str:
    kept = [x for x in errs if x is not None]
    if not kept:
        return "-"
    e = np.array(kept)
    if np.isinf(e).any():
        med, p95 = np.median(e), np.percentile(np.where(np.isinf(e), 1e9, e), 95)
    else:
        med, p95 = np.median(e), np.percentile(e, 95)
    fmt = lambda x: "failed" if x >= 1e8 or np.isinf(x) else f"{x:.1f}"  # noqa: E731
    return f"{fmt(med)} / {fmt(p95)}"


def zone_volume_errors(rows: list[dict]) -> str:
    """The measured zone's volume against the truth's: median of the absolute relative error, its
    signed median and 90th percentile, over the rows with both (``-`` when none)."""
    rel = np.array([r["zone_ml"] / r["zone_truth_ml"] - 1.0 for r in rows
                    if r.get("zone_ml") is not None and r.get("zone_truth_ml")])
    if rel.size == 0:
        return "-"
    return (f"{np.median(np.abs(rel)):.1%} ({np.median(rel):+.1%}; {np.percentile(np.abs(rel), 90):.1%}) "
            f"(n={rel.size})")


def accuracy_table(rows: list[dict]) -> list[str]:
    done = [r for r in rows if r["status"] == "complete"]
    analysable = [r for r in rows if r["status"] != "deferred"]
    errs = [r["error_mm"] for r in done if r["error_mm"] is not None]
    pos = [r["lr"] for r in done if r["residual"]]
    neg = [r["lr"] for r in done if not r["residual"]]
    nods = [n for r in analysable for n in r["nodules"]]  # every analysable study's, found or not
    big = [n for n in nods if n["diameter_mm"] >= 5]
    foci_neg = [r for r in done if not r["residual"] and r["foci"] > 0]
    early = [r for r in rows if r["scenario"] == "early"]
    conv = [r for r in done if r["error_mm"] is not None and r["error_mm"] < 2]
    fail = [r for r in done if r["error_mm"] is not None and r["error_mm"] > 4]
    e = np.array(errs) if errs else np.array([np.nan])
    ncc_auc = auc([r["ncc"] for r in conv if r["ncc"] is not None],
                  [r["ncc"] for r in fail if r["ncc"] is not None])
    return [
        "| measure | value | target |",
        "| --- | ---: | --- |",
        f"| crashes (exception, no report) | {sum(r['status'] == 'crash' for r in rows)} / {len(rows)} | 0 |",
        f"| failed reports | {sum(r['status'] == 'failed' for r in rows)} / {len(rows)} | 0 |",
        f"| imaging evidence used | {sum(r['imaging'] for r in done)} / {len(analysable)} analysable | >= 90 % |",
        f"| tumour-centre error, median | {np.median(e):.2f} mm | <= 2 mm |",
        f"| tumour-centre error, 95th percentile | {np.percentile(e, 95):.2f} mm | <= 4 mm |",
        f"| tumour-centre error, max | {np.max(e):.2f} mm | |",
        f"| residual nodules >= 5 mm found as a suspicious focus within {FOUND_WITHIN_MM:g} mm | "
        f"{sum(n['found'] for n in big)} / {len(big)} | all |",
        f"| ... by distance to the nearest other nodule | {_by_neighbour(big)} | |",
        f"| residual nodules < 5 mm found | {sum(n['found'] for n in nods if n['diameter_mm'] < 5)} / "
        f"{sum(n['diameter_mm'] < 5 for n in nods)} | |",
        f"| studies without residual with a suspicious focus | {len(foci_neg)} / {len(neg)} | 0 |",
        f"| AUC of the MRI likelihood ratio (residual vs none) | {auc(pos, neg):.3f} | >= 0.95 |",
        f"| ablation-zone volume error, median of absolute (signed median; p90) | {zone_volume_errors(done)} | |",
        f"| `poor` on a converged registration (< 2 mm): false alarms | "
        f"{sum(r['quality'] == 'poor' for r in conv)} / {len(conv)} | 0 |",
        f"| `good` on a failed registration (> 4 mm): misses | "
        f"{sum(r['quality'] == 'good' for r in fail)} / {len(fail)} | 0 |",
        f"| AUC of the registration's local NCC, converged (< 2 mm) vs failed (> 4 mm) | "
        f"{'-' if np.isnan(ncc_auc) else f'{ncc_auc:.3f}'} ({len(conv)} vs {len(fail)}) | separates |",
        f"| early studies deferred | {sum(r['status'] == 'deferred' for r in early)} / {len(early)} | all |",
    ]


def stress_table(rows: list[dict], peers: list[str]) -> list[str]:
    done = [r for r in rows if r["status"] in ("complete", "failed", "crash")]
    head = ["| band | cases | ours: error median / p95 (mm) | imaging evidence used |"]
    head[0] += "".join(f" {p}: median / p95 (mm) |" for p in peers)
    head.append("| --- | ---: | ---: | ---: |" + " ---: |" * len(peers))

    def line(label: str, sel: list[dict]) -> str:
        ours = [r["error_mm"] if r["status"] == "complete" else float("inf") for r in sel]
        s = f"| {label} | {len(sel)} | {_stats(ours)} | {sum(r['imaging'] for r in sel)} / {len(sel)} |"
        for p in peers:
            s += f" {_stats([r['peers'][p]['error_mm'] for r in sel if p in r['peers']])} |"
        return s

    out = list(head)
    out.append(line("all", done))
    for lo, hi in TRANSLATION_BANDS:
        out.append(line(f"translation {lo}-{int(hi)} mm", [r for r in done if lo <= r["translation_mm"] < hi]))
    for lo, hi in ROTATION_BANDS:
        out.append(line(f"rotation {lo}-{int(hi)} deg", [r for r in done if lo <= r["rotation_deg"] < hi]))
    def orientation(layouts: str) -> str:
        # ours names a layout ("sagittal" is one); the independent simulator "layout orientation"
        b, f = ("sagittal" if x.split()[-1] == "sagittal" else "axial" for x in layouts.split(" > "))
        return f"{b} > {f}"

    for o in ("axial > axial", "sagittal > sagittal", "axial > sagittal", "sagittal > axial"):
        out.append(line(f"orientation {o}", [r for r in done if orientation(r["layouts"]) == o]))
    seen = sorted({r["layouts"].split(" > ")[1] for r in done})
    for lay in VENDORS if set(seen) <= set(VENDORS) else seen:
        out.append(line(f"follow-up layout {lay}", [r for r in done if r["layouts"].split(" > ")[1] == lay]))
    for lo, hi in SIZE_BANDS:
        out.append(line(f"tumour {lo}-{hi} mm" if hi < 99 else f"tumour >= {lo} mm",  # diameter
                        [r for r in done if lo <= r["tumour_mm"] < hi]))
    return out


def case_rows(rows: list[dict], peers: list[str]) -> list[str]:
    out = ["| case | layouts | t mm / rot deg | status | evidence | error mm |"
           + "".join(f" {p} mm |" for p in peers) + " MRI LR | foci | nodules (found) |",
           "| --- | --- | --- | --- | --- | ---: |" + " ---: |" * len(peers) + " ---: | ---: | --- |"]
    for r in rows:
        err = "-" if r["error_mm"] is None else f"{r['error_mm']:.2f}"
        nod = ", ".join(f"{n['diameter_mm']:.1f} mm {'yes' if n['found'] else 'NO'}" for n in r["nodules"]) or "-"
        status = r["status"] if r["status"] != "crash" else f"CRASH {r['crash']}"
        peer = "".join(f" {r['peers'][p]['error_mm']:.2f} |" if p in r["peers"] else " - |" for p in peers)
        out.append(f"| {r['scenario']} {r['seed']} | {r['layouts']} | {r['translation_mm']:.0f} / "
                   f"{r['rotation_deg']:.0f} | {status} | {'yes' if r['imaging'] else 'no'} | {err} |{peer} "
                   f"{r['lr']:.2f} | {r['foci']} | {nod} |")
    return out


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {platform.system()}"


def summarise(rows: list[dict], args, peers: list[str], notes: list[str], wall_s: float) -> str:
    peer_times = {p: np.mean([r["peers"][p]["seconds"] for r in rows if p in r["peers"]] or [np.nan]) for p in peers}
    cmd = f".venv/bin/python benchmarks/accuracy.py --cases {args.cases}"
    if args.simulator == "ours":
        cmd += f" --size {args.size} --variation {args.variation}"
    else:
        cmd += f" --simulator {args.simulator}"
    if args.first_seed != (FIRST_SEED if args.simulator == "ours" else INDEPENDENT_FIRST_SEED):
        cmd += f" --first-seed {args.first_seed}"
    if args.no_peers:
        cmd += " --no-peers"
    if args.no_quality:
        cmd += " --no-quality"
    lines = [
        f"# Accuracy and stress on synthetic cases ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        (f"{len(rows)} cases, `--variation {args.variation}`, size {args.size}, " if args.simulator == "ours" else
         f"{len(rows)} cases of the independently written simulator (benchmarks/independent_sim, "
         "never used for tuning), ") +
        f"seeds {args.first_seed}-"
        f"{args.first_seed + len(rows) - 1}{' (unused by tests and tuning)' if args.first_seed >= FIRST_SEED else ''}."
        f" Machine: {machine()}. "
        + (f"{args.label}. " if args.label else "") +
        f"Wall time {wall_s / 60:.1f} min; our analysis {np.mean([r['seconds'] for r in rows]):.1f} s a case"
        + "".join(f", {p} {peer_times[p]:.1f} s" for p in peers) + ".",
        "",
        "## (a) Accuracy",
        "",
        *accuracy_table(rows),
        "",
        "### Failures by kind",
        "",
        "Each residual nodule >= 5 mm under every group it belongs to (fat suppression of the follow-up, "
        "shape, placement, straddling, curve, size), and each study without residual under its follow-up's "
        "fat suppression and the benign look-alikes at its site. Groups are the truth's own words, which "
        "differ between the two simulators.",
        "",
        *kind_table(rows),
        "",
        "### Non-mass enhancement (NME)",
        "",
        "Suspicious NME at the site as the analysis reports it (Segmentation.nme), against the truth's `nme` "
        "(DCIS-like enhancement along a duct; look-alikes: probe track, thickened stretch of rim, patchy "
        "background enhancement). A simulator whose truth has no `nme` key counts none.",
        "",
        *nme_table(rows),
        "",
        "## (b) Stress: tumour-centre error by displacement, layout and tumour size",
        "",
        "Analysable cases (deferred early studies left out); a crash or a failed report counts as an "
        "infinite error in ours (shown `failed` when it reaches the median or p95). Translation: norm "
        "of the follow-up's rigid translation; rotation: its largest angle about one axis. Peers "
        "register the same pre-contrast phases (follow-up fixed, baseline moving): SimpleITK Euler3D "
        "Mattes MI from moments with 7 starting rotations (none, +-12 deg about each axis) at 8 mm, "
        "the best refined at 4 and 2 mm; elastix its default rigid map from a centre-of-gravity start "
        "(one start).",
        "",
        *stress_table(rows, peers),
        "",
        "## (c) Registration quality figures: converged against failed alignments",
        "",
        *quality_table(rows),
        "",
        *(f"Note: {n}" for n in notes),
        "",
        "## Cases",
        "",
        *case_rows(rows, peers),
        "",
        f"Command: `{cmd}`",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=60)
    ap.add_argument("--size", choices=("small", "full"), default="small")
    ap.add_argument("--variation", choices=("wide", "clinical", "standard"), default="wide")
    ap.add_argument("--simulator", choices=("ours", "independent"), default="ours",
                    help="ours: followup.synth; independent: benchmarks/independent_sim (written without "
                         "reading ours; its seeds are never used for tuning)")
    ap.add_argument("--first-seed", type=int, default=None,
                    help=f"first seed (default {FIRST_SEED}, {INDEPENDENT_FIRST_SEED} with --simulator independent; "
                         f"tuning uses {TUNING_SEEDS}, never the default range)")
    ap.add_argument("--no-peers", action="store_true", help="skip SimpleITK and elastix")
    ap.add_argument("--no-quality", action="store_true", help="skip the quality-figure arm (table c)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the generated cases in this folder")
    ap.add_argument("--out", type=Path, default=None,
                    help="results file (default results/accuracy.md, results/accuracy-independent.md with "
                         "--simulator independent)")
    ap.add_argument("--rows-json", type=Path, default=None, help="also write every case's row (JSON) here")
    ap.add_argument("--label", default="", help="a sentence for the header (which analysis code)")
    args = ap.parse_args()
    if args.first_seed is None:
        args.first_seed = FIRST_SEED if args.simulator == "ours" else INDEPENDENT_FIRST_SEED
    if args.out is None:
        args.out = HERE / "results" / ("accuracy.md" if args.simulator == "ours" else "accuracy-independent.md")
    peers, notes = ([], ["peers skipped (--no-peers)"]) if args.no_peers else available_peers()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="followup-accuracy-"))
    rows = []
    t0 = time.perf_counter()
    try:
        own = None if args.simulator == "ours" else tuple(independent_sim.SCENARIOS)
        for scenario, seed in case_list(args.cases, args.first_seed, own):
            row = run_case(workdir, scenario, seed, args.size, args.variation, peers, not args.no_quality,
                           args.simulator)
            rows.append(row)
            peer = " ".join(f"{p}={v['error_mm']:.2f}" for p, v in row["peers"].items())
            err = "-" if row["error_mm"] is None else f"{row['error_mm']:.2f}"
            print(f"{scenario:10s} {seed} {row['layouts']:30s} t={row['translation_mm']:5.1f} "
                  f"r={row['rotation_deg']:4.1f} {row['status']:8s} err={err} {peer} imaging={row['imaging']} "
                  f"lr={row['lr']:.2f} foci={row['foci']} nme={row['nme_reported']} {row['nodules']} "
                  f"{row['nme']}", flush=True)
            if args.keep is None:
                shutil.rmtree(workdir / f"{scenario}-{seed}", ignore_errors=True)
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.rows_json is not None:
        args.rows_json.write_text(json.dumps(rows, indent=1, default=float))
    text = summarise(rows, args, [p for p, _ in peers], notes, time.perf_counter() - t0)
    write_results(args.out, text)


if __name__ == "__main__":
    main()
