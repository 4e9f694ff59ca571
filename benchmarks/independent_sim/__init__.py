"""An independently written simulator of baseline and follow-up breast DCE-MRI after cryoablation.

Written from physics and the clinical literature, without reading the project's own generator
(``followup/synth``), so that the analysis can be measured on studies it was never tuned on.
Entry points: :func:`generate_case` (one baseline/follow-up case) and :func:`generate_series` (a
surveillance series); CLI: ``python -m benchmarks.independent_sim``. README.md in this folder
describes the models.
"""

from .case import FIRST_BENCHMARK_SEED, SCENARIOS, generate_case, scenario_for
from .series import FIRST_SERIES_BENCHMARK_SEED, generate_series

__all__ = ["FIRST_BENCHMARK_SEED", "FIRST_SERIES_BENCHMARK_SEED", "SCENARIOS", "generate_case", "generate_series",
           "scenario_for"]
