"""Synthetic breast DCE-MRI study pairs (baseline + post-cryoablation follow-up) with ground truth."""

from followup.synth.generate import SIZES, VENDORS, generate_pair
from followup.synth.scenario import SCENARIOS, VARIATIONS

__all__ = ["SCENARIOS", "SIZES", "VARIATIONS", "VENDORS", "generate_pair"]
