"""The nipple-areolar complex and the location of a finding as a radiologist gives it.

The nipple sits at the breast's apex, its most anterior point (prone, the breast hangs and the
nipple is its lowest point): a short rounded cylinder protruding from the skin anteriorly (-y in
LPS), tilted a little; around it the areola, a disc of thickened skin. On DCE-MRI the nipple enhances (it is
vascular, erectile tissue), so it shows as a small bright protrusion on the post-contrast images.
Sizes are assumptions in the range of adult anatomy: nipple 8-14 mm wide, protruding 4-10 mm;
areola 14-24 mm in radius, its skin 2.5-4.5 mm thick (thicker than the 1.2-2.2 mm elsewhere).

Location (ACR BI-RADS MRI lexicon, ``shared/clinical-evidence.md``): laterality, clock face and
distance from the nipple. Clock face: the coronal projection (x, z) of the finding relative to the
nipple, seen by a viewer facing the patient: 12 o'clock superior (+z), 3 o'clock towards the
patient's left (+x), 9 o'clock towards the patient's right (-x), the same for both breasts (so the
lateral side is 3 o'clock on the left breast and 9 o'clock on the right). Distance: the straight
(3-D) distance from the nipple's base point to the finding's centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anatomy import Breast, inside
from .lesions import unit


@dataclass
class Nipple:
    """The nipple in tissue (baseline LPS) coordinates, with its kinetics targets."""

    base: np.ndarray  # centre of its base on the skin surface: the point distances are measured from
    axis: np.ndarray  # unit vector, outwards
    radius: float
    length: float  # protrusion beyond the skin
    areola_radius: float
    areola_skin_mm: float
    initial_pct: float
    late_pct: float

    def occupancy(self, p: np.ndarray) -> np.ndarray:
        """A capsule from just under the skin to a rounded tip ``length`` out."""
        a = self.base - self.axis * 1.5
        b = self.base + self.axis * max(self.length - self.radius, 0.5)
        seg = b - a
        t = np.clip(((p - a) @ seg) / (seg @ seg), 0.0, 1.0)
        d = np.linalg.norm(p - (a + t[:, None] * seg), axis=1) - self.radius
        return inside(d, 0.4)

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        r = self.length + self.radius + 3.0
        return self.base - r, self.base + r


def breast_apex(breast: Breast) -> np.ndarray:
    """The most anterior (-y) point of the breast's dome: prone, the breast hangs and the nipple is
    its lowest point. On a chest wall that recedes laterally this lies medial to the dome's axis."""
    rho, ang = np.meshgrid(np.linspace(0, 0.95, 96), np.linspace(0, 2 * np.pi, 144, endpoint=False), indexing="ij")
    x = breast.base_centre[0] + rho.ravel() * breast.radius_x * np.cos(ang.ravel())
    z = breast.base_centre[2] + rho.ravel() * breast.radius_z * np.sin(ang.ravel())
    y = breast.chest_y(x, z) - breast.height * (1 - rho.ravel() ** 2) ** (1 / breast.q)
    i = int(np.argmin(y))
    return np.array([x[i], y[i], z[i]])


def make_nipple(rng: np.random.Generator, breast: Breast) -> Nipple:
    """The nipple at the apex of ``breast``; sets the breast's areola so its skin is thicker there."""
    apex = breast_apex(breast)
    tilt = rng.normal(0, 0.08, 3)
    tilt[1] = 0.0
    axis = unit(np.array([0.0, -1.0, 0.0]) + tilt)
    nip = Nipple(base=apex, axis=axis, radius=float(rng.uniform(4.0, 7.0)), length=float(rng.uniform(4.0, 10.0)),
                 areola_radius=float(rng.uniform(14.0, 24.0)), areola_skin_mm=float(rng.uniform(2.5, 4.5)),
                 # assumption: the nipple enhances moderately to strongly and keeps rising (vascular tissue)
                 initial_pct=float(rng.uniform(45, 120)), late_pct=float(rng.uniform(5, 30)))
    breast.areola = (apex, nip.areola_radius, nip.areola_skin_mm)
    return nip


def clock_face(finding: np.ndarray, nipple: np.ndarray) -> int:
    """Hour 1-12 of ``finding`` around ``nipple`` (LPS mm), viewer facing the patient: 12 superior
    (+z), 3 towards the patient's left (+x), 9 towards the patient's right, for either breast."""
    v = np.asarray(finding, float) - np.asarray(nipple, float)
    angle = np.degrees(np.arctan2(v[0], v[2])) % 360.0  # clockwise from +z towards +x
    hour = int(np.floor(angle / 30.0 + 0.5)) % 12
    return 12 if hour == 0 else hour


def location(finding: np.ndarray, nipple: np.ndarray, laterality: str) -> dict:
    """``{"laterality", "clock_face", "distance_from_nipple_mm"}`` of a finding (same frame as the nipple)."""
    return {"laterality": laterality, "clock_face": clock_face(finding, nipple),
            "distance_from_nipple_mm": round(float(np.linalg.norm(np.asarray(finding) - np.asarray(nipple))), 1)}
