"""Bad input further in than the listener: a follow-up without its procedure record, a malformed
record given to the command line. Where each kind of bad input is tested: the table in
tests/integration/test_bad_input.py."""

from __future__ import annotations

import json

from followup.config import Settings
from followup.procedure import load_procedure
from followup.service.importer import import_folder
from followup.service.orchestrator import new_analysis, process_analysis
from followup.service.registry import Registry
from followup.service.store import Store


def test_followup_without_procedure_is_deferred(tmp_path, synth_pair):
    """No procedure record for the follow-up's patient: deferred with the reason (it resumes
    when the record is added); another patient's study is classified as usual."""
    settings = Settings(data_dir=tmp_path / "data")
    store, reg = Store(settings.data_dir), Registry(settings.database_url)
    lonely, other = synth_pair("complete", 3), synth_pair("residual", 1)
    reg.add_procedure(load_procedure(other / "procedure.json"))
    for name, folder in (("lonely", lonely / "followup"), ("other", other / "baseline")):
        few = tmp_path / name  # a few instances register the study; deferral reads no pixels
        few.mkdir()
        for src in sorted(folder.glob("*.dcm"))[:5]:
            (few / src.name).write_bytes(src.read_bytes())
        assert import_folder(few, store, reg).stored == 5
    reg.claim_stable_studies(0)
    uid = {name: json.loads((pair / "truth.json").read_text())["studies"][role]["study_uid"]
           for name, pair, role in (("lonely", lonely, "followup"), ("other", other, "baseline"))}
    out = process_analysis(settings, reg, store, new_analysis(reg, uid["lonely"], "realtime").id)
    assert out.status == "deferred" and "no procedure record for this patient" in out.reason
    assert reg.study(uid["lonely"]).state == "deferred"
    out = process_analysis(settings, reg, store, new_analysis(reg, uid["other"], "realtime").id)
    assert out.status == "baseline" and reg.study(uid["other"]).role == "baseline"


def test_malformed_procedure_record_cli(tmp_path, synth_pair):
    """`followup procedures add` with a malformed record: one line naming the field, exit 2,
    nothing added; the record already there is untouched. (In-process through typer's runner:
    test_cli.py runs the real executable.)"""
    from typer.testing import CliRunner

    from followup.cli import app

    env = {"FOLLOWUP_DATA_DIR": str(tmp_path / "data")}
    runner = CliRunner()
    good = synth_pair("complete", 3) / "procedure.json"
    assert runner.invoke(app, ["procedures", "add", str(good)], env=env).exit_code == 0
    record = json.loads(good.read_text())
    record["lesion"]["diameter_mm"] = -3
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(record))
    (tmp_path / "broken.json").write_text('{"patient_id": "P1",')
    for path, field in ((bad, "lesion.diameter_mm"), (tmp_path / "broken.json", "not valid JSON")):
        r = runner.invoke(app, ["procedures", "add", str(path)], env=env)
        assert r.exit_code == 2 and "Traceback" not in r.output
        (line,) = r.stderr.strip().splitlines()
        assert line.startswith("error [procedure-record]:") and field in line
    listed = json.loads(runner.invoke(app, ["procedures", "list", "--json"], env=env).stdout)
    assert len(listed) == 1
    assert listed[0]["diameter_mm"] == json.loads(good.read_text())["lesion"]["diameter_mm"]
