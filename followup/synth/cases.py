"""The case of one scenario, seed and variation: the standard or wide draw
(:func:`followup.synth.scenario.draw_scenario_case`), and for ``clinical`` that seed's wide case with
the clinical variation's own draws on top (:func:`followup.synth.clinical.add_clinical`, from a
generator of its own). Here, above both, so that the scenario module need not import the clinical
one that builds on it."""

from __future__ import annotations

import numpy as np

from followup.synth.case_model import SCENARIOS, Case
from followup.synth.clinical import add_clinical
from followup.synth.scenario import draw_scenario_case


def draw_case(scenario: str, seed: int, n_post: int, variation: str = "standard") -> Case:
    """The case of one scenario and seed: the same arguments give the same case (one generator,
    its draws always made in the same order). ``variation``: ``standard``, ``wide`` or
    ``clinical`` (see :mod:`followup.synth.scenario`)."""
    case = draw_scenario_case(scenario, seed, n_post, variation)
    if variation == "clinical":
        case = add_clinical(case, np.random.default_rng([seed, SCENARIOS.index(scenario), 2027]))
    return case
