"""The scanner: protocol, slice grid, rendering of the tissue into phases, bias field and noise.

A protocol draws field strength, SPGR parameters (TR 3.5-6.5 ms, flip 10-18 deg), fat
suppression (or not), orientation (axial or sagittal), pixel size (0.7-1.2 mm), slice thickness
(1.5-3 mm), the number and timing of post-contrast phases (first at 60-110 s, then every
60-120 s), a receive gain, an SNR and a smooth multiplicative coil-sensitivity (bias) field fixed
to the scanner, not the patient.

Rendering: every voxel is sampled at 1-3 points across its slice thickness (partial volume along
the thick direction; in-plane pixels are small enough), each point mapped into tissue
coordinates by the pose of its phase (repositioning, deformation, motion between phases), the
normal tissue classes mixed by their occupancy (a matrix product with each class's signal per
phase), then lesion and treatment layers painted over in order (``S <- S (1 - a) + a S_layer``).
The noise is Rician: the magnitude of the signal plus complex Gaussian noise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .anatomy import PD, T1_S, Breast
from .kinetics import Tissue, blood, spgr, tissue_for_targets

CLASSES = ("air", "fat", "fgt", "skin", "muscle", "marrow", "cortex", "lung", "blood")
LAYOUTS = ("per-phase", "single-series", "trigger-series")
ORIENTATIONS = {  # (row direction, column direction) of the image plane, LPS
    "axial": (np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])),
    "sagittal": (np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0])),
}


@dataclass
class Protocol:
    field_t: float
    tr_ms: float
    te_ms: float
    flip_deg: float
    fat_sat: bool
    fat_residual: float  # share of fat signal left by fat suppression
    orientation: str
    layout: str
    pixel_mm: float
    slice_mm: float
    fov_mm: float  # in-plane
    slab_mm: float  # across slices
    post_times_s: np.ndarray  # k-space centre of each post-contrast phase after injection
    phase_duration_s: float
    snr: float  # FGT pre-contrast signal / noise SD
    bias: np.ndarray  # coefficients of the log-bias polynomial (9: linear and quadratic)
    bpe_pct: float  # background parenchymal enhancement at the first post phase
    coarse: bool = False  # tests: one sample per voxel (no partial-volume sampling)

    @property
    def n_phases(self) -> int:
        return 1 + len(self.post_times_s)

    @property
    def matrix(self) -> int:
        return int(round(self.fov_mm / self.pixel_mm))

    @property
    def n_slices(self) -> int:
        return int(round(self.slab_mm / self.slice_mm))

    @property
    def sub_samples(self) -> int:
        if self.coarse:
            return 1
        return 1 if self.slice_mm <= 1.6 else (2 if self.slice_mm <= 2.6 else 3)

    def describe(self) -> dict:
        return {"field_t": self.field_t, "tr_ms": round(self.tr_ms, 2), "te_ms": round(self.te_ms, 2),
                "flip_deg": round(self.flip_deg, 1), "fat_sat": self.fat_sat, "orientation": self.orientation,
                "layout": self.layout, "pixel_mm": round(self.pixel_mm, 3), "slice_mm": round(self.slice_mm, 2),
                "matrix": self.matrix, "slices": self.n_slices,
                "post_times_s": [round(float(t), 1) for t in self.post_times_s], "snr": round(self.snr, 1),
                "bpe_pct": round(self.bpe_pct, 1)}


def draw_protocol(rng: np.random.Generator, n_post: int | None = None, orientation: str | None = None,
                  layout: str | None = None, small: bool = False) -> Protocol:
    field_t = float(rng.choice([1.5, 3.0]))
    n_post = int(rng.integers(2, 6)) if n_post is None else n_post
    first = rng.uniform(60, 110)
    gaps = rng.uniform(60, 120, n_post - 1)
    post = np.concatenate([[first], first + np.cumsum(gaps)])
    if post[-1] < 180:  # two phases close together would leave the late change undefined
        post[-1] = 180 + rng.uniform(0, 40)
    orientation = orientation or str(rng.choice(["axial", "sagittal"], p=[0.6, 0.4]))
    fov = rng.uniform(112, 120) if small else rng.uniform(112, 140)
    pixel = rng.uniform(max(0.7, fov / 150), 1.2) if not small else rng.uniform(1.8, 2.0)
    slice_mm = rng.uniform(1.5, 3.0) if not small else 3.0
    slab = rng.uniform(80, 88) if small else rng.uniform(95, 125)
    return Protocol(
        field_t=field_t, tr_ms=rng.uniform(3.5, 6.5), te_ms=rng.uniform(1.2, 2.6), flip_deg=rng.uniform(10, 18),
        fat_sat=bool(rng.random() < 0.7), fat_residual=rng.uniform(0.05, 0.15), orientation=orientation,
        layout=layout or str(rng.choice(LAYOUTS)), pixel_mm=pixel, slice_mm=slice_mm, fov_mm=fov, slab_mm=slab,
        post_times_s=post, phase_duration_s=rng.uniform(45, 70), snr=rng.uniform(18, 45),
        bias=rng.normal(0, 1, 9) * np.array([0.12, 0.12, 0.12, 0.06, 0.06, 0.06, 0.04, 0.04, 0.04]),
        bpe_pct=float(rng.choice([rng.uniform(2, 10), rng.uniform(10, 25), rng.uniform(25, 45)], p=[0.45, 0.4, 0.15])),
        coarse=small,
    )


@dataclass
class Grid:
    """The slice grid: voxel (i, j, k) lies at origin + i dx row + j dx col + k dz normal."""

    origin: np.ndarray
    row: np.ndarray
    col: np.ndarray
    normal: np.ndarray
    pixel_mm: float
    slice_mm: float
    shape: tuple[int, int, int]  # (columns = along row, rows = along col, slices)

    @classmethod
    def centred(cls, centre: np.ndarray, p: Protocol) -> Grid:
        row, col = ORIENTATIONS[p.orientation]
        normal = np.cross(row, col)
        shape = (p.matrix, p.matrix, p.n_slices)
        origin = centre - ((shape[0] - 1) * p.pixel_mm * row + (shape[1] - 1) * p.pixel_mm * col
                           + (shape[2] - 1) * p.slice_mm * normal) / 2
        return cls(origin, row, col, normal, p.pixel_mm, p.slice_mm, shape)

    @property
    def affine(self) -> np.ndarray:
        a = np.eye(4)
        a[:3, 0] = self.row * self.pixel_mm
        a[:3, 1] = self.col * self.pixel_mm
        a[:3, 2] = self.normal * self.slice_mm
        a[:3, 3] = self.origin
        return a

    def world(self, ijk: np.ndarray) -> np.ndarray:
        return ijk @ self.affine[:3, :3].T + self.origin

    def contains(self, p: np.ndarray, margin_mm: float = 0.0) -> bool:
        ijk = np.linalg.solve(self.affine[:3, :3], p - self.origin)
        lim = (np.array(self.shape) - 1) * np.array([self.pixel_mm, self.pixel_mm, self.slice_mm])
        pos = ijk * np.array([self.pixel_mm, self.pixel_mm, self.slice_mm])
        return bool(np.all(pos >= margin_mm) and np.all(pos <= lim - margin_mm))

    def slice_positions(self) -> list[np.ndarray]:
        return [self.origin + k * self.slice_mm * self.normal for k in range(self.shape[2])]


@dataclass
class Layer:
    """Something painted over the normal tissue: an occupancy function (tissue coordinates), its
    pre-contrast signal (a number or a function of position) and its relative enhancement per phase
    (optionally scaled per position by ``gain``)."""

    name: str
    bbox: tuple[np.ndarray, np.ndarray]
    occupancy: Callable[[np.ndarray], np.ndarray]
    s0: float | Callable[[np.ndarray], np.ndarray]
    enhancement: np.ndarray
    gain: Callable[[np.ndarray], np.ndarray] | None = None


@dataclass
class Pose:
    """The phases acquired with the patient in one position, and the map world -> tissue."""

    phases: list[int]
    to_tissue: Callable[[np.ndarray], np.ndarray]


@dataclass
class SignalModel:
    """Signal of each normal tissue class at each phase of one protocol (arbitrary units)."""

    protocol: Protocol
    t1: dict[str, float]
    s0: dict[str, float]
    tissues: dict[str, Tissue] = field(default_factory=dict)

    def matrix(self) -> np.ndarray:
        return np.array([self.s0[c] * (1 + self.tissues[c].enhancement) for c in CLASSES])

    def pre_signal(self, m0: float, t1_s: float) -> float:
        return float(spgr(m0, t1_s, self.protocol.tr_ms, self.protocol.flip_deg))

    def kinetics(self, initial_pct: float, late_pct: float, t1_s: float, vp: float = 0.02) -> Tissue:
        p = self.protocol
        return tissue_for_targets(initial_pct, late_pct, t1_s, p.post_times_s, p.tr_ms, p.flip_deg, vp)


def signal_model(p: Protocol, rng: np.random.Generator) -> SignalModel:
    t1 = T1_S[p.field_t]
    s0 = {}
    for c in CLASSES:
        if c == "air":
            s0[c] = 0.0
            continue
        pd = PD.get(c, 0.5)
        if c in ("fat", "marrow") and p.fat_sat:
            pd *= p.fat_residual
        t1c = t1.get(c, t1["muscle"]) if c != "cortex" else 1.0
        s0[c] = float(spgr(pd, t1c, p.tr_ms, p.flip_deg))
    m = SignalModel(p, dict(t1), s0)
    zero = np.zeros(p.n_phases)
    m.tissues = {
        "air": Tissue(0, 0, 0, 1.0, zero), "cortex": Tissue(0, 0, 0, 1.0, zero), "lung": Tissue(0, 0, 0, 1.0, zero),
        "fat": m.kinetics(rng.uniform(1, 4), rng.uniform(-2, 5), t1["fat"], vp=0.001),
        "marrow": m.kinetics(rng.uniform(5, 15), rng.uniform(-5, 5), t1["marrow"], vp=0.005),
        "fgt": m.kinetics(p.bpe_pct, rng.uniform(10, 40), t1["fgt"], vp=0.002),
        "skin": m.kinetics(rng.uniform(15, 40), rng.uniform(5, 25), t1["skin"], vp=0.01),
        "muscle": m.kinetics(rng.uniform(25, 60), rng.uniform(-5, 15), t1["muscle"], vp=0.02),
        "blood": blood(t1["blood"], p.post_times_s, p.tr_ms, p.flip_deg),
    }
    return m


def render(grid: Grid, model: SignalModel, breast: Breast, layers: list[Layer], poses: list[Pose],
           chunk_points: int = 400_000) -> np.ndarray:
    """Noise-free signal of every phase on the grid: (phases, columns, rows, slices) float32."""
    p = model.protocol
    nx, ny, nz = grid.shape
    ns = p.sub_samples
    out = np.zeros((p.n_phases, nx, ny, nz), np.float32)
    cls = model.matrix()  # (classes, phases)
    ii, jj = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    plane = (grid.origin + np.outer(ii.ravel(), grid.row * grid.pixel_mm)
             + np.outer(jj.ravel(), grid.col * grid.pixel_mm))  # (nx * ny, 3) world, slice 0
    offsets = (np.arange(ns) - (ns - 1) / 2) / ns  # in slice units
    per_slice = nx * ny * ns
    step = max(1, chunk_points // per_slice)
    for pose in poses:
        ph = np.array(pose.phases)
        for k0 in range(0, nz, step):
            ks = np.arange(k0, min(nz, k0 + step))
            kk = (ks[:, None] + offsets[None, :]).ravel()  # (slices * ns,)
            world = (plane[None, :, :] + (kk * grid.slice_mm)[:, None, None] * grid.normal).reshape(-1, 3)
            tissue = pose.to_tissue(world)
            occ = breast.classes(tissue)
            sig = np.stack([occ[c] for c in CLASSES], 1).astype(np.float32) @ cls[:, ph].astype(np.float32)
            t_lo, t_hi = tissue.min(0), tissue.max(0)
            for layer in layers:
                lo, hi = layer.bbox
                if np.any(lo > t_hi) or np.any(hi < t_lo):
                    continue  # nowhere in this chunk
                m = np.all((tissue >= lo) & (tissue <= hi), axis=1)
                if not m.any():
                    continue
                idx = np.nonzero(m)[0]
                pts = tissue[idx]
                a = layer.occupancy(pts).astype(np.float32)
                keep = a > 1e-4
                if not keep.any():
                    continue
                idx, pts, a = idx[keep], pts[keep], a[keep]
                s0 = layer.s0(pts) if callable(layer.s0) else np.full(len(pts), layer.s0)
                g = layer.gain(pts) if layer.gain is not None else np.ones(len(pts))
                val = s0[:, None] * (1 + g[:, None] * layer.enhancement[ph][None, :])
                sig[idx] = sig[idx] * (1 - a[:, None]) + a[:, None] * val
            # average the sub-samples of each voxel; order: slice, sub-sample, plane point
            sig = sig.reshape(len(ks), ns, nx * ny, len(ph)).mean(1)
            out[np.ix_(ph, np.arange(nx), np.arange(ny), ks)] = \
                sig.transpose(2, 1, 0).reshape(len(ph), nx, ny, len(ks))
    return out


def bias_field(grid: Grid, coeffs: np.ndarray) -> np.ndarray:
    """Smooth multiplicative coil sensitivity over the grid (scanner frame), mean about 1."""
    nx, ny, nz = grid.shape
    u = np.linspace(-1, 1, nx)[:, None, None]
    v = np.linspace(-1, 1, ny)[None, :, None]
    w = np.linspace(-1, 1, nz)[None, None, :]
    terms = [u, v, w, u * u - 1 / 3, v * v - 1 / 3, w * w - 1 / 3, u * v, v * w, u * w]
    log_b = sum(c * t for c, t in zip(coeffs, terms, strict=True))
    return np.exp(np.broadcast_to(log_b, grid.shape)).astype(np.float32)


def finish(clean: np.ndarray, grid: Grid, p: Protocol, ref_signal: float,
           rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Bias field, receive gain, Rician noise and quantisation to 12-bit unsigned integers.
    Returns (phases, columns, rows, slices) uint16 and the noise SD in stored units."""
    level = rng.uniform(350, 650)  # FGT pre-contrast lands here
    img = clean * bias_field(grid, p.bias)[None] * (level / ref_signal)
    sigma = level / p.snr
    real = img + sigma * rng.standard_normal(img.shape, dtype=np.float32)
    imag = sigma * rng.standard_normal(img.shape, dtype=np.float32)
    noisy = np.sqrt(real * real + imag * imag)
    return np.clip(np.rint(noisy), 0, 4095).astype(np.uint16), float(sigma)
