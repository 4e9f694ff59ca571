"""The command line as a user runs it: real processes, exit codes, messages without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

EXE = str(Path(sys.executable).with_name("followup"))


def run(*args, check=False):
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, check=check)


def test_synth_then_inspect(tmp_path):
    out = tmp_path / "pair"
    res = run("synth", "--out", out, "--scenario", "complete", "--seed", "4", "--vendor", "sagittal")
    assert res.returncode == 0, res.stderr
    assert "wrote" in res.stdout and "residual=False" in res.stdout
    res = run("inspect", out / "followup", "--json", "--nifti", tmp_path / "nii")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert "Traceback" not in res.stderr
    written = [Path(p) for p in summary["nifti"]]
    assert len(written) == 5
    img = nib.load(written[0])
    truth = json.loads((out / "truth.json").read_text())
    lps = np.array(truth["studies"]["followup"]["dce_affine_lps"])
    assert np.allclose(img.affine, np.diag([-1, -1, 1, 1]) @ lps, atol=1e-4)
    # the text form is readable and carries no patient identifiers
    res = run("inspect", out)
    assert res.returncode == 0, res.stderr
    assert "SYNTHETIC" not in res.stdout and "SYN00004" not in res.stdout
    assert "DCE" in res.stdout


def test_synth_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "x").write_text("keep me")
    res = run("synth", "--out", tmp_path)
    assert res.returncode == 2 and "not empty" in res.stderr
    assert (tmp_path / "x").read_text() == "keep me"


def _folder_of_junk(d):
    (d / "notdicom").mkdir()
    (d / "notdicom" / "a.dcm").write_bytes(b"hello")
    return d / "notdicom"


@pytest.mark.parametrize("make_input,code", [
    (lambda d: d / "missing", "not-found"),
    (_folder_of_junk, "no-dicom"),
])
def test_inspect_bad_input_is_one_clear_line(tmp_path, make_input, code):
    res = run("inspect", make_input(tmp_path))
    assert res.returncode == 2
    assert res.stderr.startswith(f"error [{code}]:")
    assert "Traceback" not in res.stderr


def test_unknown_option_values_are_refused(tmp_path):
    res = run("synth", "--out", tmp_path / "o", "--scenario", "nonsense")
    assert res.returncode != 0 and "nonsense" in res.stderr


def test_every_command_has_working_help():
    """`--help` renders for every command and sub-command (rich markup in a help text, e.g. a
    literal `[/tls]`, once made `serve-dicom --help` crash)."""
    import typer.main
    from typer.testing import CliRunner

    from followup.cli import app

    root = typer.main.get_command(app)
    runner = CliRunner()
    paths: list[list[str]] = []

    def walk(cmd, path: list[str]) -> None:
        paths.append(path)
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            walk(sub, [*path, name])

    walk(root, [])
    assert len(paths) > 10
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output[-500:], result.exception)
        assert "Usage" in result.output, path
