"""Batch scoring in this process: chunks, the server's prediction path, lineage, bad input."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from scoring_helpers import FEATURES, customers

import shipyard.data as data
from shipyard.errors import InvalidInput, NotFound
from shipyard.project import Project
from shipyard.scoring import score
from shipyard.serving.predictor import Predictor
from shipyard.store.models import DatasetVersionRecord, RunRecord
from shipyard.tracking.lineage import lineage
from shipyard.tracking.runs import get_run


def expected(project: Project, frame: pd.DataFrame) -> list[dict[str, object]]:
    """What the server would answer for these rows: the same Predictor, all rows at once."""
    return Predictor.load("churn@champion", project=project).predict(frame[FEATURES]).records()


def test_scores_in_chunks_into_a_version_with_lineage(project: Project, folder: Path) -> None:
    calls: list[tuple[int, int]] = []
    out = folder / "scores.parquet"
    result = score(
        "churn@champion",
        "customers",
        out=out,
        chunk_rows=700,
        project=project,
        progress=lambda done, total: calls.append((done, total)),
    )

    assert result.dataset.ref == "customers-scored@1" and result.created
    assert result.source.ref == "customers@1" and result.model == "churn@1"
    assert result.rows == 3000 and result.runner == "in-process"
    assert calls == [(min(700 * k, 3000), 3000) for k in range(1, 6)]
    source = data.get("customers", project=project).to_pandas()
    assert result.columns == [*source.columns, "prediction", "filtered"]
    scored = result.dataset.to_pandas()
    assert scored[list(source.columns)].equals(source)  # every column kept, rows in order
    # Each row's answer is the server's: the filter's rows are withheld (null) with the rule.
    answers = expected(project, source)
    assert [None if pd.isna(v) else bool(v) for v in scored["prediction"]] == [
        a["prediction"] for a in answers
    ]
    assert [None if pd.isna(v) else v for v in scored["filtered"]] == [
        a.get("filtered") for a in answers
    ]
    withheld = [a for a in answers if "filtered" in a]
    assert withheld and result.withheld == {"refer_old": len(withheld)}
    assert scored["prediction"].isna().sum() == len(withheld)
    assert (scored.loc[scored["filtered"].notna(), "age"] > 75).all()
    # --out holds the same scores as the version.
    assert pq.read_table(out).equals(pq.read_table(result.dataset.path()))
    assert result.dataset.parent == "customers@1"

    run = get_run(result.run_id, project=project)
    assert run.kind == "score" and run.status == "finished"
    assert run.params["model"] == "churn@1" and run.params["dataset"] == "customers@1"
    inputs = {a.name: a for a in run.artifacts if a.direction == "input"}
    assert inputs["model"].kind == "model" and inputs["model"].meta["ref"] == "churn@1"
    assert inputs["dataset"].meta["ref"] == "customers@1"
    assert run.metrics["rows"] == 3000

    # Lineage, both ways: the scores come from the run, which read the data and the model ...
    up = lineage("customers-scored@1", project=project)
    produced = next(node for node in up.upstream if node.kind == "run")
    assert produced.id == result.run_id
    assert {(n.kind, n.id) for n in produced.children} >= {
        ("dataset", "customers@1"),
        ("model", "churn@1"),
    }
    # ... and the data and the model lead to the scores.
    for ref in ("customers@1", "model:churn@champion"):
        found = {
            (n.kind, n.id) for node in lineage(ref, project=project).downstream for n in node.walk()
        }
        assert ("run", result.run_id) in found and ("dataset", "customers-scored@1") in found, ref


def test_kept_columns_and_a_named_output(project: Project) -> None:
    result = score(
        "churn@1", "customers@1", name="churn-scores", keep_columns=["id"], project=project
    )
    assert result.dataset.ref == "churn-scores@1"
    assert result.columns == ["id", "prediction", "filtered"]
    only = score("churn@1", "customers@1", name="bare", keep_columns=[], project=project)
    assert only.columns == ["prediction", "filtered"]
    assert only.dataset.to_pandas()["prediction"].equals(result.dataset.to_pandas()["prediction"])


def _state(project: Project, folder: Path) -> tuple[int, list[str], set[str]]:
    with project.metadata.read() as session:
        versions = session.query(DatasetVersionRecord).count()
        statuses = sorted(run.status for run in session.query(RunRecord))
    return versions, statuses, {p.name for p in folder.iterdir()}


def test_bad_input_writes_nothing(project: Project, folder: Path) -> None:
    out = folder / "scores.parquet"
    frame = customers(600, 2)
    data.add(frame.drop(columns=["visits"]), "no-visits", project=project)
    bad_level = frame.copy()
    bad_level.loc[450, "plan"] = "gold"  # past the rows checked up front: found mid-job
    data.add(bad_level, "bad-level", project=project)
    before = _state(project, folder)

    with pytest.raises(NotFound, match="no registered model 'nope'"):
        score("nope@1", "customers", out=out, project=project)
    with pytest.raises(NotFound, match="did you mean customers"):
        score("churn@1", "customer", out=out, project=project)
    with pytest.raises(InvalidInput, match="lacks the column\\(s\\) 'visits'"):
        score("churn@1", "no-visits", out=out, project=project)
    with pytest.raises(InvalidInput, match="cannot keep column\\(s\\) 'email'"):
        score("churn@1", "customers", keep_columns=["email"], project=project)
    with pytest.raises(InvalidInput, match="cannot keep column\\(s\\) 'prediction'"):
        score("churn@1", "customers", keep_columns=["prediction"], project=project)
    with pytest.raises(InvalidInput, match="must name a Parquet file"):
        score("churn@1", "customers", out=folder / "scores.csv", project=project)
    with pytest.raises(InvalidInput, match="unknown runner"):
        score("churn@1", "customers", runner="spark", project=project)
    assert _state(project, folder) == before  # refused up front: no run, no version, no file

    with pytest.raises(InvalidInput, match=r"rows 400 to 599 of bad-level@1.*'gold'"):
        score("churn@1", "bad-level", out=out, chunk_rows=200, project=project)
    versions, statuses, files = _state(project, folder)
    assert (versions, files) == (before[0], before[2])  # no version, no --out, no temp file
    assert statuses == [*before[1], "failed"]  # the attempt is on record, as failed
