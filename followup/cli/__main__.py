"""``python -m followup.cli``."""

from followup.cli import app

app()
