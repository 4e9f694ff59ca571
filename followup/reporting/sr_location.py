"""Where a finding lies, and the breast around it, as coded SR content: the finding site's clock
face (its topographical modifier: SNOMED CT "n o'clock position", "subareolar region", "central
region of breast"), the distance from the nipple (DCM 121242) and the depth (DCM 111020); the
treated breast's composition (DCM 111006) and background parenchymal enhancement. For the SR's
finding groups (:mod:`followup.reporting.sr`)."""

from __future__ import annotations

from highdicom.sr import FindingSite, Measurement, QualitativeEvaluation

from followup.reporting import codes
from followup.reporting.model import Report
from followup.reporting.model_reading import LocationRow
from followup.reporting.reading_codes import clock_code, depth_pairs


def site(laterality: str, loc: LocationRow | None) -> list[FindingSite]:
    """The breast on its side, with the clock face (or subareolar / central) when located."""
    return [FindingSite(anatomic_location=codes.BREAST, laterality=codes.LATERALITY[laterality],
                        topographical_modifier=None if loc is None else clock_code(loc))]


def location_measurements(loc: LocationRow | None) -> list[Measurement]:
    if loc is None:
        return []
    return [Measurement(name=codes.DISTANCE_FROM_NIPPLE, value=float(loc.distance_from_nipple_mm),
                        unit=codes.UNIT_MM)]


def location_evaluations(loc: LocationRow | None) -> list[QualitativeEvaluation]:
    return [QualitativeEvaluation(name, value) for name, value in depth_pairs(loc)]


def breast_evaluations(report: Report) -> list[QualitativeEvaluation]:
    """The treated breast's composition and background parenchymal enhancement (none unread)."""
    t = report.breast.treated if report.breast is not None else None
    if t is None:
        return []
    return [QualitativeEvaluation(codes.COMPOSITION, codes.COMPOSITION_VALUES[t.composition]),
            QualitativeEvaluation(codes.BPE, codes.BPE_VALUES[t.bpe])]


__all__ = ["breast_evaluations", "location_evaluations", "location_measurements", "site"]
