"""An independently written simulator of baseline and follow-up breast DCE-MRI after cryoablation.

Written from physics and the clinical literature, without reading the project's own generator
(``followup/synth``), so that the analysis can be measured on studies it was never tuned on.
Entry point: :func:`generate_case` (CLI: ``python -m benchmarks.independent_sim``); README.md
in this folder describes the models.
"""

from .case import FIRST_BENCHMARK_SEED, SCENARIOS, generate_case, scenario_for

__all__ = ["FIRST_BENCHMARK_SEED", "SCENARIOS", "generate_case", "scenario_for"]
