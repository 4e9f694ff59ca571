"""The radiologist's reading in the FHIR bundle: each finding's location as Observation components
(clock face as SNOMED CT, distance from the nipple, depth), the treated breast's composition and
background parenchymal enhancement, and each non-mass enhancement at the site, coded as in the SR
(:mod:`followup.reporting.sr_location`). Pure: the report in, (kind, code, values) out; the bundle
is assembled by :mod:`followup.reporting.fhir_observations`."""

from __future__ import annotations

from followup.reporting import codes
from followup.reporting.fhir_elements import CURVE, concept, quantity
from followup.reporting.fhir_lexicon import coded
from followup.reporting.finding_text import COMPOSITION_WORDS, nme_location_text
from followup.reporting.model import Report
from followup.reporting.model_reading import LocationRow, NmeRow
from followup.reporting.reading_codes import clock_code, depth_pairs

Spec = tuple[str, dict, dict]  # (the entry's kind, the Observation's code, its other elements)


def location_components(loc: LocationRow | None) -> list[dict]:
    if loc is None:
        return []
    return [{"code": coded(codes.LOCATION_CLOCKFACE), "valueCodeableConcept": coded(clock_code(loc))},
            {"code": coded(codes.DISTANCE_FROM_NIPPLE),
             "valueQuantity": quantity(round(float(loc.distance_from_nipple_mm), 0), "mm", "mm")},
            *({"code": coded(name), "valueCodeableConcept": coded(value)} for name, value in depth_pairs(loc))]


def breast_spec(r: Report) -> Spec | None:
    """The treated breast's composition (value) and background enhancement (component)."""
    t = r.breast.treated if r.breast is not None else None
    if t is None:
        return None
    return ("Observation/breast-composition", coded(codes.COMPOSITION), {
        "valueCodeableConcept": coded(codes.COMPOSITION_VALUES[t.composition]),
        "component": [{"code": coded(codes.BPE), "valueCodeableConcept": coded(codes.BPE_VALUES[t.bpe])}],
        "note": [{"text": f"Treated ({t.side}) breast: composition {t.composition} "
                          f"({COMPOSITION_WORDS[t.composition]}, {100 * t.fibroglandular_share:.0f}% of the "
                          f"breast), background parenchymal enhancement {t.bpe}."}]})


def nme_spec(k: int, x: NmeRow) -> Spec:
    comps: list[dict] = [
        {"code": coded(codes.NME_DISTRIBUTION),
         "valueCodeableConcept": coded(codes.NME_DISTRIBUTION_VALUES[x.distribution])},
        {"code": coded(codes.NME_INTERNAL),
         "valueCodeableConcept": coded(codes.NME_INTERNAL_VALUES[x.internal_enhancement])},
        {"code": coded(codes.EXTENT), "valueQuantity": quantity(round(float(x.extent_mm), 1), "mm", "mm")},
        {"code": concept("distance-to-zone-edge", "Distance to the ablation zone edge"),
         "valueQuantity": quantity(round(float(x.distance_to_zone_edge_mm), 1), "mm", "mm")},
    ]
    if x.delayed_phase in CURVE:
        comps.append({"code": concept("curve-type", "Enhancement curve type"),
                      "valueCodeableConcept": concept(x.delayed_phase, CURVE[x.delayed_phase])})
    where = f" ({nme_location_text(x)})"
    return (f"Observation/nme-{k}", {**coded(codes.NON_MASS_ENHANCEMENT), "text": f"{x.phrase}{where}"},
            {"component": comps + location_components(x.location),
             "note": [{"text": "Why suspicious: " + "; ".join(x.why)}]})


__all__ = ["Spec", "breast_spec", "location_components", "nme_spec"]
