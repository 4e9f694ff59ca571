"""The readable reports' words: names and dates as people write them."""

import pytest

from followup.reporting.report_text import iso_date, person_name


@pytest.mark.parametrize("pn, shown", [
    ("SYNTHETIC^COMPLETE^3", "SYNTHETIC, COMPLETE 3"),
    ("DOE^JANE", "DOE, JANE"),
    ("DOE", "DOE"),
    ("^JANE", "JANE"),
    ("YAMADA^TARO=山田^太郎=やまだ^たろう", "YAMADA, TARO"),
    ("", ""),
])
def test_person_name(pn, shown):
    assert person_name(pn) == shown


@pytest.mark.parametrize("da, shown", [("19580312", "1958-03-12"), ("", ""), (None, ""),
                                       ("1958-03-12", "1958-03-12"), ("1958", "1958")])
def test_iso_date(da, shown):
    assert iso_date(da) == shown
