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


def site(laterality: str, loc: LocationRow | None) -> list[FindingSite]:
    """The breast on its side, with the clock face (or subareolar / central) when located."""
    modifier = None
    if loc is not None:
        if loc.clock_hour is not None:
            modifier = codes.CLOCK_POSITION[loc.clock_hour]
        else:
            modifier = codes.SUBAREOLAR if loc.clock_face == "subareolar" else codes.CENTRAL
    return [FindingSite(anatomic_location=codes.BREAST, laterality=codes.LATERALITY[laterality],
                        topographical_modifier=modifier)]


def location_measurements(loc: LocationRow | None) -> list[Measurement]:
    if loc is None:
        return []
    return [Measurement(name=codes.DISTANCE_FROM_NIPPLE, value=float(loc.distance_from_nipple_mm),
                        unit=codes.UNIT_MM)]


def location_evaluations(loc: LocationRow | None) -> list[QualitativeEvaluation]:
    if loc is None or loc.depth not in codes.DEPTH_VALUES:
        return []
    return [QualitativeEvaluation(codes.DEPTH, codes.DEPTH_VALUES[loc.depth])]


def breast_evaluations(report: Report) -> list[QualitativeEvaluation]:
    """The treated breast's composition and background parenchymal enhancement (none unread)."""
    if report.breast is None:
        return []
    treated = [t for t in report.breast.tissue if t.treated]
    if not treated:
        return []
    t = treated[0]
    return [QualitativeEvaluation(codes.COMPOSITION, codes.COMPOSITION_VALUES[t.composition]),
            QualitativeEvaluation(codes.BPE, codes.BPE_VALUES[t.bpe])]


__all__ = ["breast_evaluations", "location_evaluations", "location_measurements", "site"]
