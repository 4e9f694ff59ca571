"""The nipples of the synthetic breasts, and where the tumour and the zone lie from them.

Each breast gets a nipple: a small protrusion (an ellipsoid of skin, ``NIPPLE_RADIUS_MM`` across
and standing ``NIPPLE_PROTRUSION_MM`` out of the breast's apex, the breast ellipsoid's most
anterior point in the body frame). It is drawn as part of the body (skin signal and curve: the
phantom's skin layer covers it). Its tip (the most anterior skin point) is the truth's nipple.

``location_truth`` gives a point's clock face and distance from the nipple by the convention of
:mod:`followup.pipelines.breast_location` (viewer facing the patient, coronal projection: 12 at
+z, 3 o'clock toward the patient's left, +x; the distance straight-line), computed here on its own
so a test can compare the two.
"""

from __future__ import annotations

import numpy as np

from followup.synth.case_model import CHEST_WALL_Y, Case, Variation

NIPPLE_RADIUS_MM = 5.0
NIPPLE_PROTRUSION_MM = 6.0


def breast_apex(v: Variation, side: float) -> np.ndarray:
    """The breast ellipsoid's most anterior point (body frame)."""
    return np.array([side * v.breast_centre_x_mm, CHEST_WALL_Y - v.breast_radii_mm[1], 0.0])


def nipple_tip(v: Variation, side: float) -> np.ndarray:
    """The nipple's tip (body frame): the breast's most anterior skin point."""
    return breast_apex(v, side) - np.array([0.0, NIPPLE_PROTRUSION_MM, 0.0])


def nipple_distance(v: Variation, bx, by, bz) -> np.ndarray:
    """Signed radial distance (mm) to the nearer nipple's surface (an axis-aligned ellipsoid
    centred on the apex, as ``phantom.ellipsoid_distance`` measures it); negative inside. Only
    points near an apex are evaluated (elsewhere a positive bound)."""
    out = np.full(np.shape(bx), 1e3, dtype=np.float32)
    radii = (NIPPLE_RADIUS_MM, NIPPLE_PROTRUSION_MM, NIPPLE_RADIUS_MM)
    for side in (1.0, -1.0):
        apex = breast_apex(v, side)
        near = (np.abs(bx - apex[0]) < 15) & (np.abs(by - apex[1]) < 15) & (np.abs(bz - apex[2]) < 15)
        if np.any(near):
            rel = [bx[near] - apex[0], by[near] - apex[1], bz[near] - apex[2]]
            rho = np.sqrt(sum((r / a) ** 2 for r, a in zip(rel, radii, strict=True)))
            dist = np.sqrt(sum(r ** 2 for r in rel))
            d = np.where(rho > 1e-6, dist * (1.0 - 1.0 / np.maximum(rho, 1e-6)), -1e3)
            out[near] = np.minimum(out[near], d.astype(np.float32))
    return out


def clock_hour(dx: float, dz: float) -> int:
    angle = float(np.degrees(np.arctan2(dx, dz))) % 360.0
    hour = int(np.floor(angle / 30.0 + 0.5)) % 12
    return 12 if hour == 0 else hour


def location_truth(point: np.ndarray, nipple: np.ndarray, laterality: str) -> dict:
    """A point's laterality, clock hour and distance from the nipple (both in one frame)."""
    v = np.asarray(point, float) - np.asarray(nipple, float)
    return {"laterality": "left" if laterality.upper().startswith("L") else "right",
            "clock_hour": clock_hour(float(v[0]), float(v[2])),
            "distance_from_nipple_mm": round(float(np.linalg.norm(v)), 2),
            "coronal_offset_mm": round(float(np.hypot(v[0], v[2])), 2),
            "depth_share": round(float(v[1] / (CHEST_WALL_Y - nipple[1])), 3)}


def nipple_truth(case: Case) -> dict:
    """truth.json's ``nipple_lps_mm`` (the treated breast's nipple tip in each study's frame),
    ``tumour_location`` (the baseline tumour centre from the baseline nipple) and
    ``zone_location`` (the follow-up zone centre from the follow-up nipple). ``depth_share``:
    along y, as a share of the nipple-to-chest-wall distance (the baseline chest wall)."""
    tip = nipple_tip(case.variation, case.side_sign)
    to_fu = lambda p: case.transform.invert_points(p)[0]  # noqa: E731
    tip_fu = to_fu(tip)
    return {
        "nipple_lps_mm": {"baseline": _r(tip), "followup": _r(tip_fu)},
        "tumour_location": location_truth(case.tumour.centre, tip, case.laterality),
        "zone_location": location_truth(to_fu(case.zone.centre), tip_fu, case.laterality),
    }


def _r(a) -> list[float]:
    return np.round(np.asarray(a, dtype=float), 3).tolist()
