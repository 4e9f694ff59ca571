"""Registration benchmark: ours (``followup.pipelines.registration``) against classical toolkits on the
same synthetic pairs, in the same run: time and error at the tumour centre.

Every method registers the follow-up's pre-contrast phase (fixed) to the baseline's (moving),
from the same decoded arrays with the same LPS geometry, and maps the baseline tumour centre
(``procedure.json``) into the follow-up; the error is the distance to the true centre
(``truth.json``, ``tumour.centre_followup_lps_mm``), as in benchmarks/accuracy.py. Times cover the
registration call only (building a toolkit's image from the array is left out).

Peers, each with a standard multi-resolution affine set-up:
* SimpleITK: Mattes MI (32 bins), affine initialised on the image centres, 3 levels at about 6, 3
  and 1.5 mm (shrink factors from the voxel size, Gaussian smoothing of half the shrink factor),
  random sampling of ~8000 voxels per level (our budget), regular-step gradient descent (at most
  300 iterations a level, physical-shift scales), linear interpolation;
* ANTsPy: ``ants.registration(type_of_transform="Affine")`` with ANTs' own defaults (Mattes MI,
  4 levels, shrink 6/4/2/1);
* itk-elastix: elastix's default ``affine`` parameter map (Advanced Mattes MI, 4 levels, 256
  iterations, 2048 random samples, adaptive stochastic gradient descent).
ANTsPy and itk-elastix are skipped, with a note, when they are not installed
(``pip install '.[bench]'`` installs all three). Ours runs with one CPU thread (see registration/compute.py);
the toolkits use their default thread count (every core).

Usage: .venv/bin/python benchmarks/bench_register.py [--small N] [--full N] [--repeats N]
Writes benchmarks/results/register.md and prints it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from followup.dicom import load_dce_study
from followup.pipelines.registration.compute import compute_device
from followup.pipelines.registration.driver import register
from followup.procedure import load_procedure
from followup.testing.bench import ensure_pair, write_results
from followup.volume import Volume

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
SMALL_CASES = (("residual", 2001, "per-phase"), ("complete", 2002, "single-series"),
               ("confounder", 2003, "sagittal"), ("residual", 2004, "single-series"),
               ("complete", 2005, "per-phase"))
FULL_CASES = (("residual", 5, "single-series"), ("complete", 6, "per-phase"), ("confounder", 7, "sagittal"))
LEVELS_MM = (6.0, 3.0, 1.5)
SAMPLES_PER_LEVEL = 8000

Mapper = Callable[[np.ndarray], np.ndarray]  # baseline LPS point -> follow-up LPS point


def cached_pair(size: str, scenario: str, seed: int, vendor: str) -> Path:
    return ensure_pair(CACHE / f"{size}-{scenario}-{seed}-{vendor}", size, scenario, seed, vendor)


def _inverse_point(forward: Callable[[np.ndarray], np.ndarray]) -> Mapper:
    """A toolkit's affine maps fixed (follow-up) -> moving (baseline) points; invert it."""
    o = forward(np.zeros(3))
    m = np.column_stack([forward(np.eye(3)[i]) - o for i in range(3)])
    return lambda p: np.linalg.solve(m, np.asarray(p, float) - o)


def _geometry(vol: Volume) -> tuple[list[float], list[float], np.ndarray]:
    sp = vol.spacing
    return sp.tolist(), vol.affine[:3, 3].tolist(), vol.affine[:3, :3] / sp


def _itk_image(vol: Volume, from_array: Callable, direction_of: Callable[[np.ndarray], object]):
    """A SimpleITK or ITK image of ``vol`` (arrays in z, y, x order) with its LPS geometry."""
    img = from_array(np.ascontiguousarray(vol.data.T))
    sp, origin, direction = _geometry(vol)
    img.SetSpacing(sp)
    img.SetOrigin(origin)
    img.SetDirection(direction_of(direction))
    return img


# ----------------------------------------------------------------------------- methods


def ours(fixed: Volume, moving: Volume, centre_b: np.ndarray) -> Callable[[], Mapper]:
    def run() -> Mapper:
        res = register(fixed, moving, centre_b)
        return lambda p: res.baseline_to_followup(p)[0]
    return run


def simpleitk(fixed: Volume, moving: Volume, centre_b: np.ndarray) -> Callable[[], Mapper]:
    import SimpleITK as sitk

    f, m = (_itk_image(v, sitk.GetImageFromArray, lambda d: d.flatten().tolist()) for v in (fixed, moving))

    def run() -> Mapper:
        shrink = [max(1, round(float(mm / min(fixed.spacing)))) for mm in LEVELS_MM]
        n = float(np.prod(fixed.shape))
        init = sitk.CenteredTransformInitializer(f, m, sitk.AffineTransform(3),
                                                 sitk.CenteredTransformInitializerFilter.GEOMETRY)
        reg = sitk.ImageRegistrationMethod()
        reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
        reg.SetMetricSamplingStrategy(reg.RANDOM)
        reg.SetMetricSamplingPercentagePerLevel(
            [min(1.0, SAMPLES_PER_LEVEL / (n / s ** 3)) for s in shrink], seed=1)
        reg.SetInterpolator(sitk.sitkLinear)
        reg.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-4,
                                                     numberOfIterations=300, relaxationFactor=0.5)
        reg.SetOptimizerScalesFromPhysicalShift()
        reg.SetShrinkFactorsPerLevel(shrink)
        reg.SetSmoothingSigmasPerLevel([s / 2.0 for s in shrink])
        reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
        reg.SetInitialTransform(init, inPlace=False)
        tx = reg.Execute(f, m)
        return _inverse_point(lambda p: np.array(tx.TransformPoint(tuple(float(v) for v in p))))
    return run


def antspy(fixed: Volume, moving: Volume, centre_b: np.ndarray) -> Callable[[], Mapper]:
    import ants

    def image(vol: Volume):
        sp, origin, direction = _geometry(vol)
        return ants.from_numpy(np.ascontiguousarray(vol.data), origin=origin, spacing=sp,
                               direction=direction)

    f, m = image(fixed), image(moving)

    def run() -> Mapper:
        reg = ants.registration(f, m, type_of_transform="Affine")
        tx = ants.read_transform(reg["fwdtransforms"][0])
        return _inverse_point(lambda p: np.array(tx.apply_to_point(tuple(float(v) for v in p))))
    return run


def elastix(fixed: Volume, moving: Volume, centre_b: np.ndarray) -> Callable[[], Mapper]:
    import itk

    f, m = (_itk_image(v, itk.image_from_array, lambda d: itk.matrix_from_array(np.ascontiguousarray(d)))
            for v in (fixed, moving))

    def run() -> Mapper:
        params = itk.ParameterObject.New()
        params.AddParameterMap(params.GetDefaultParameterMap("affine"))
        _, result = itk.elastix_registration_method(f, m, parameter_object=params,
                                                    log_to_console=False)
        pm = result.GetParameterMap(0)
        p = np.array([float(v) for v in pm["TransformParameters"]])
        c = np.array([float(v) for v in pm["CenterOfRotationPoint"]])
        a, t = p[:9].reshape(3, 3), p[9:12]
        return _inverse_point(lambda q: a @ (np.asarray(q) - c) + c + t)
    return run


def available() -> tuple[list[tuple[str, Callable]], list[str]]:
    methods: list[tuple[str, Callable]] = [("ours", ours)]
    notes = []
    for name, module, fn in (("SimpleITK", "SimpleITK", simpleitk), ("ANTsPy", "ants", antspy),
                             ("itk-elastix", "itk", elastix)):
        try:
            mod = __import__(module)
            if module == "itk" and not hasattr(mod, "ParameterObject"):
                raise ImportError("itk is installed without itk-elastix")
            methods.append((name, fn))
        except (ImportError, OSError) as exc:  # not installed or broken: skipped, said in the table
            notes.append(f"{name} skipped: {type(exc).__name__}: {str(exc)[:120]}")
    return methods, notes


# ----------------------------------------------------------------------------- run


def run_case(pair: Path, methods, repeats: int) -> dict:
    fu = load_dce_study(pair / "followup", decode_phases=1)
    ba = load_dce_study(pair / "baseline", decode_phases=1)
    fixed, moving = fu.phases[0].volume, ba.phases[0].volume
    centre_b = np.asarray(load_procedure(pair / "procedure.json").lesion.center_lps_mm, float)
    truth = np.asarray(json.loads((pair / "truth.json").read_text())["tumour"]["centre_followup_lps_mm"])
    row: dict[str, Any] = {"case": pair.name, "shape": fixed.shape}
    for name, make in methods:
        run = make(fixed, moving, centre_b)
        walls, cpus, errs = [], [], []
        for _ in range(repeats):
            t, c = time.perf_counter(), time.process_time()
            mapper = run()
            walls.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
            errs.append(float(np.linalg.norm(mapper(centre_b) - truth)))
        row[name] = {"wall": statistics.median(walls), "cpu": statistics.median(cpus),
                     "err": statistics.median(errs)}
        print(f"{pair.name:40s} {name:12s} {row[name]['wall']:7.2f} s  err {row[name]['err']:.2f} mm",
              flush=True)
    return row


def summary(rows: list[dict], methods: list[str], notes: list[str], repeats: int,
            load: tuple[float, float]) -> str:
    peers = [m for m in methods if m != "ours"]
    lines = [
        f"# Registration: ours against classical toolkits ({dt.date.today().isoformat()})",
        "",
        (f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; "
         f"our compute device `{compute_device()}`. Load average before / after: {load[0]:.2f} / "
         f"{load[1]:.2f}. Median of {repeats} run(s) per method and case."),
        ("Follow-up pre-contrast (fixed) to baseline pre-contrast (moving); error = distance between "
         "the mapped baseline tumour centre and the true one in the follow-up. Ours: rigid + affine "
         "(6, 3 mm) + local rigid refinement around the lesion (1.5 mm), one CPU thread; the "
         "toolkits: global affine, their default threads (every core)."),
        "",
    ]
    for size in ("small", "full"):
        sel = [r for r in rows if r["case"].startswith(size)]
        if not sel:
            continue
        shapes = sorted({" x ".join(map(str, r["shape"])) for r in sel})
        lines += [f"## {size} size ({', '.join(shapes)} voxels)", "",
                  "| case | " + " | ".join(f"{m} s (CPU s) / error mm" for m in methods) + " |",
                  "| --- | " + " | ".join("---:" for _ in methods) + " |"]
        for r in sel:
            lines.append(f"| {r['case']} | " + " | ".join(
                f"{r[m]['wall']:.2f} ({r[m]['cpu']:.2f}) / {r[m]['err']:.2f}" for m in methods) + " |")
        med = {m: {k: statistics.median(r[m][k] for r in sel) for k in ("wall", "cpu", "err")}
               for m in methods}
        lines.append("| **median** | " + " | ".join(
            f"**{med[m]['wall']:.2f} ({med[m]['cpu']:.2f}) / {med[m]['err']:.2f}**" for m in methods)
            + " |")
        lines += ["", "| ours / peer | time (wall) | CPU time | error (median) |",
                  "| --- | ---: | ---: | ---: |"]
        for p in peers:
            lines.append(f"| ours / {p} | {med['ours']['wall'] / med[p]['wall']:.2f} | "
                         f"{med['ours']['cpu'] / med[p]['cpu']:.2f} | "
                         f"{med['ours']['err'] / med[p]['err']:.2f} |")
        lines.append("")
    lines += [f"Note: {n}" for n in notes]
    lines += ["", ("Command: `.venv/bin/python benchmarks/bench_register.py` (peers: "
                   "`.venv/bin/pip install -e '.[bench]'`)"), ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", type=int, default=len(SMALL_CASES), help="small cases to run")
    ap.add_argument("--full", type=int, default=1, help=f"full-size cases (at most {len(FULL_CASES)})")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    methods, notes = available()
    pairs = [cached_pair("small", *c) for c in SMALL_CASES[:args.small]]
    pairs += [cached_pair("full", *c) for c in FULL_CASES[:args.full]]
    load_before = os.getloadavg()[0]
    rows = [run_case(p, methods, args.repeats) for p in pairs]
    text = summary(rows, [m for m, _ in methods], notes, args.repeats,
                   (load_before, os.getloadavg()[0]))
    write_results(HERE / "results" / "register.md", text)


if __name__ == "__main__":
    main()
