"""`shipyard drift run / history / show / report`, the real console script."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from drift_helpers import T0, frame, records, register_model, write_log

from shipyard.project import Project

sys.path.insert(0, str(Path(__file__).parents[1] / "cli"))
from cli_helpers import error_line, run_shipyard


def test_drift_commands(tmp_path: Path) -> None:
    project = Project.init(tmp_path / ".shipyard")
    register_model(project, rows=600)
    write_log(project, records(frame(400, seed=5, age_shift=30, plans=[0.1, 0.1, 0.8]), T0))
    project.close()
    window = ("--since", "2024-05-01T13:00:00+00:00", "--until", "2024-05-01T14:00:00+00:00")

    ran = run_shipyard(
        "drift", "run", "churn", *window, "--report", "r.html", "--json", cwd=tmp_path
    )
    assert ran.returncode == 0, ran.output
    result = json.loads(ran.stdout)
    assert result["current_rows"] == 400 and result["drifted"]
    age = next(c for c in result["columns"] if c["name"] == "age")
    assert age["method"] == "ks" and age["drifted"]  # 600 reference rows: p-values
    assert (tmp_path / "r.html").read_text().count("age") >= 1

    listed = run_shipyard("drift", "history", "churn", cwd=tmp_path)
    assert listed.returncode == 0 and "churn-train@1" in listed.stdout and "drift" in listed.stdout

    shown = run_shipyard("drift", "report", str(result["id"]), "--out", "again.html", cwd=tmp_path)
    assert shown.returncode == 0, shown.output
    assert (tmp_path / "again.html").stat().st_size > 0

    missing = run_shipyard("drift", "show", "999", cwd=tmp_path)
    assert "no drift result 999" in error_line(missing)
