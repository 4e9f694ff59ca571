"""Synthetic breast DCE-MRI study pairs (baseline + post-cryoablation follow-up) with ground truth."""

from followup.synth.case_model import SCENARIOS, VARIATIONS
from followup.synth.generate import SIZES, VENDORS, generate_pair

__all__ = ["SCENARIOS", "SIZES", "VARIATIONS", "VENDORS", "generate_pair"]
