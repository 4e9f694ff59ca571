"""The accuracy benchmark's zone-volume figure: the measured ablation zone against the truth's,
median of the absolute relative error with its sign and 90th percentile; rows without a truth
volume or a measured zone (deferred, crashed) are left out."""

from __future__ import annotations

import pytest

from benchmarks.accuracy import zone_volume_errors


def test_zone_volume_error_summarises_the_measured_rows_only():
    rows = [{"zone_ml": 9.0, "zone_truth_ml": 10.0}, {"zone_ml": 12.0, "zone_truth_ml": 10.0},
            {"zone_ml": 10.5, "zone_truth_ml": 10.0}, {"zone_ml": None, "zone_truth_ml": 10.0},
            {"zone_ml": 5.0, "zone_truth_ml": None}, {}]
    text = zone_volume_errors(rows)
    # errors -10 %, +20 %, +5 %: median of absolute 10 %, signed median +5 %, p90 of absolute 18 %
    assert text.startswith("10.0% (+5.0%; 18.0%)") and text.endswith("(n=3)")


@pytest.mark.parametrize("rows", [[], [{"zone_ml": None, "zone_truth_ml": 3.0}]])
def test_zone_volume_error_without_a_measured_row_is_a_dash(rows):
    assert zone_volume_errors(rows) == "-"
