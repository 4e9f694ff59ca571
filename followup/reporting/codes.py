"""Coded concepts of the DICOM objects: standard codes (DCM, SCT, UCUM) where they exist,
private codes under the coding scheme ``99FOLLOWUP`` where they do not.

The private scheme is declared in each object's Coding Scheme Identification Sequence.
"""

from __future__ import annotations

from highdicom.sr import CodedConcept
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from followup import __version__

PRIVATE_SCHEME = "99FOLLOWUP"
PRIVATE_SCHEME_NAME = "followup residual-tumour assessment codes"


def private(value: str, meaning: str) -> CodedConcept:
    return CodedConcept(value=value, scheme_designator=PRIVATE_SCHEME, meaning=meaning)


def coding_scheme_identification() -> Dataset:
    item = Dataset()
    item.CodingSchemeDesignator = PRIVATE_SCHEME
    item.CodingSchemeName = PRIVATE_SCHEME_NAME
    item.CodingSchemeVersion = __version__
    item.CodingSchemeResponsibleOrganization = "followup"
    return item


# --- standard codes ---------------------------------------------------------------------------
BREAST = codes.SCT.Breast
LATERALITY = {"L": codes.SCT.Left, "R": codes.SCT.Right}
MRI_OF_BREAST = codes.SCT.MagneticResonanceImagingOfBreast
VOLUME = codes.SCT.Volume
LONG_AXIS = codes.SCT.LongAxis
DIAMETER = codes.SCT.Diameter
PROBABILITY_OF_CANCER = codes.DCM.ProbabilityOfCancer
RECOMMENDATION = codes.DCM.Recommendation
COMMENT = codes.DCM.Comment
YES, NO = codes.SCT.Yes, codes.SCT.No
NECROSIS = codes.SCT.Necrosis
LESION = codes.SCT.Lesion
NEOPLASM = codes.SCT.Neoplasm
MORPHOLOGICALLY_ALTERED = codes.SCT.MorphologicallyAbnormalStructure
SPATIAL_CONCEPT = codes.SCT.SpatialAndRelationalConcept
CURVE_TYPE_VALUES = {
    "persistent": codes.DCM.PersistentDelayedPhaseType1Curve,
    "plateau": codes.DCM.PlateauDelayedPhaseType2Curve,
    "washout": codes.DCM.WashoutDelayedPhaseType3Curve,
}
UNIT_ML = CodedConcept("ml", "UCUM", "milliliter")
UNIT_MM = CodedConcept("mm", "UCUM", "millimeter")
UNIT_MM2 = CodedConcept("mm2", "UCUM", "square millimeter")
AREA = codes.SCT.Area
UNIT_PERCENT = codes.UCUM.Percent
UNIT_RATIO = codes.UCUM.Ratio

# --- private codes ----------------------------------------------------------------------------
ABLATION_ZONE = private("FU001", "Cryoablation zone")
ENHANCING_RIM = private("FU002", "Peri-ablational enhancing rim")
SUSPICIOUS_FOCUS = private("FU003", "Suspicious enhancing focus at the ablation site")
ABLATION_TARGET = private("FU004", "Treated tumour plus target margin (mapped from baseline)")
SMALLEST_MARGIN = private("FU010", "Smallest ablative margin around the mapped tumour")
COVERS_TARGET = private("FU011", "Ablation zone covers tumour plus target margin")
RIM_THICKNESS = private("FU012", "Rim thickness (median)")
INITIAL_ENHANCEMENT = private("FU013", "Initial-phase percent enhancement")
PEAK_ENHANCEMENT = private("FU014", "Peak percent enhancement")
SER = private("FU015", "Signal enhancement ratio")
DISTANCE_TO_EDGE = private("FU016", "Distance to the ablation zone edge")
KINETIC_CURVE_TYPE = private("FU017", "Kinetic curve type (delayed phase)")
PROBABILITY_LOWER = private("FU020", "Residual tumour probability, 95% interval lower bound")
PROBABILITY_UPPER = private("FU021", "Residual tumour probability, 95% interval upper bound")
RESIDUAL_ASSESSMENT = private("FU022", "Residual tumour assessment after cryoablation")
ANALYSIS_STATUS = private("FU023", "Analysis status")
CAVEAT = private("FU024", "Caveat")
REGISTRATION_QUALITY = private("FU025", "Registration to baseline quality")
GOOD, POOR = private("FU030", "Good"), private("FU031", "Poor")
STATUS_VALUES = {"complete": private("FU034", "Complete"),
                 "deferred": private("FU032", "Deferred: not analysed yet"),
                 "failed": private("FU033", "Failed: no automatic assessment")}

# ACR BI-RADS assessment category (DCM 111005 "Assessment Category"; values: CID 6027 "Assessment
# from BI-RADS", SNOMED CT); category 4's subdivision 4A/4B/4C has no SNOMED code in CID 6027: a
# private coded subdivision beside SNOMED's category 4.
BIRADS_ASSESSMENT = codes.DCM.AssessmentCategory
_BIRADS_0 = CodedConcept("397138000", "SCT", "0 - Incomplete - Need additional imaging evaluation")
_BIRADS_2 = CodedConcept("397141009", "SCT", "2 - Benign")
_BIRADS_3 = CodedConcept("397143007", "SCT", "3 - Probably Benign")
_BIRADS_4 = CodedConcept("397144001", "SCT", "4 - Suspicious")
_BIRADS_5 = CodedConcept("397145000", "SCT", "5 - Highly suggestive of malignancy")
BIRADS_VALUES = {"0": _BIRADS_0, "2": _BIRADS_2, "3": _BIRADS_3, "4A": _BIRADS_4, "4B": _BIRADS_4,
                 "4C": _BIRADS_4, "5": _BIRADS_5}
BIRADS_SUBCATEGORY = private("FU040", "BI-RADS category 4 subdivision")
BIRADS_SUBCATEGORY_VALUES = {"4A": private("FU041", "4A - Low suspicion for malignancy"),
                             "4B": private("FU042", "4B - Moderate suspicion for malignancy"),
                             "4C": private("FU043", "4C - High suspicion for malignancy")}
ENDPOINT = private("FU044", "What the probability is about (endpoint)")
CONTRAINDICATION = private("FU045", "Procedure outside the indication of cryoablation")
CORE_VOLUME = private("FU018", "Focus core volume (voxels >= half its peak enhancement)")

# ACR BI-RADS MRI lexicon of a finding (followup.pipelines.segmentation.lexicon): standard codes
# where the lexicon's own word has one (SNOMED CT shape, DICOM margins), private otherwise.
SHAPE = codes.SCT.Shape
SHAPE_VALUES = {"oval": codes.SCT.OvalShapedLesion, "round": codes.SCT.RoundShape, "irregular": codes.SCT.Irregular}
MARGIN = codes.DCM.Margins
MARGIN_VALUES = {"circumscribed": codes.DCM.Circumscribed, "spiculated": codes.DCM.Spiculated,
                 "irregular": codes.SCT.Irregular}
INTERNAL_ENHANCEMENT = private("FU060", "Internal enhancement (BI-RADS MRI)")
INTERNAL_ENHANCEMENT_VALUES = {"homogeneous": codes.DCM.Homogeneous,
                               "heterogeneous": private("FU061", "Heterogeneous"),
                               "rim enhancement": private("FU062", "Rim enhancement")}
FINDING_TYPE = private("FU063", "Finding type (BI-RADS MRI)")
FINDING_TYPE_VALUES = {"mass": codes.SCT.Mass, "focus": private("FU064", "Focus (enhancing, < 5 mm)")}
INITIAL_PHASE = private("FU065", "Initial phase enhancement (BI-RADS MRI)")
INITIAL_PHASE_VALUES = {"slow": private("FU066", "Slow"), "medium": private("FU067", "Medium"),
                        "fast": private("FU068", "Fast")}

# the report's technique, comparison and what it does not assess (issue 24): TEXT items of the SR
TECHNIQUE = codes.DCM.ProcedureDescription
COMPARISON = codes.DCM.ComparisonToPreviousStudies
NOT_ASSESSED = private("FU090", "Not assessed by this analysis")

# Where a finding lies (breast_location): the clock face as the finding site's topographical
# modifier (SNOMED CT "n o'clock position", "subareolar region", "central region of breast"), the
# distance from the nipple (DCM 121242) and the depth (DCM 111020: anterior, middle, posterior third).
CLOCK_POSITION = {h: getattr(codes.SCT, f"_{h}OClockPosition") for h in range(1, 13)}
SUBAREOLAR = codes.SCT.SubareolarRegion
CENTRAL = codes.SCT.CentralRegionOfBreast
DISTANCE_FROM_NIPPLE = codes.DCM.DistanceFromNipple
DEPTH = codes.DCM.Depth
DEPTH_VALUES = {"anterior": private("FU070", "Anterior third"), "middle": private("FU071", "Middle third"),
                "posterior": private("FU072", "Posterior third")}
# Breast composition (DCM 111006, SNOMED CT values) and background parenchymal enhancement
# (private: no standard code) of the treated breast.
COMPOSITION = codes.DCM.BreastComposition
COMPOSITION_VALUES = {"a": codes.SCT.AlmostEntirelyFatBreastComposition,
                      "b": codes.SCT.ScatteredFibroglandularDensities, "c": codes.SCT.HeterogeneouslyDense,
                      "d": codes.SCT.ExtremelyDense}
BPE = private("FU073", "Background parenchymal enhancement (BI-RADS MRI)")
BPE_VALUES = {"minimal": codes.SCT.Minimal, "mild": codes.SCT.Mild, "moderate": codes.SCT.Moderate,
              "marked": private("FU074", "Marked")}
# Non-mass enhancement (segmentation/nme): the finding, its distribution and internal pattern.
NON_MASS_ENHANCEMENT = private("FU075", "Non-mass enhancement at the ablation site")
NME_DISTRIBUTION = private("FU076", "Non-mass enhancement distribution (BI-RADS MRI)")
NME_DISTRIBUTION_VALUES = {"focal": codes.SCT.Focal, "linear": codes.DCM.Linear, "segmental": codes.SCT.Segmental,
                           "regional": codes.SCT.Regional}
NME_INTERNAL = private("FU077", "Non-mass enhancement internal pattern (BI-RADS MRI)")
NME_INTERNAL_VALUES = {"homogeneous": codes.DCM.Homogeneous, "heterogeneous": private("FU061", "Heterogeneous"),
                       "clumped": private("FU078", "Clumped"), "clustered-ring": private("FU079", "Clustered ring")}
EXTENT = private("FU080", "Extent (longest)")
LOCATION_CLOCKFACE = codes.DCM.ClockfaceOrRegion
