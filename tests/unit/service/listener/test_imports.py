"""The listener's process stays light: it does not import the analysis stack."""

from __future__ import annotations

import subprocess
import sys


def test_listener_process_does_not_load_the_analysis_stack():
    """The listener (and the task module it enqueues through) stays light: torch, MONAI and the
    report libraries load only in workers that analyse (~80 MB instead of ~360 MB per listener)."""
    code = ("import sys, workers.tasks, followup.service.listener, followup.service.reconcile, "
            "followup.cli; heavy = [m for m in ('torch', 'monai', 'matplotlib', 'reportlab', 'highdicom') "
            "if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"loaded by the listener: {out.stdout.strip()}"
