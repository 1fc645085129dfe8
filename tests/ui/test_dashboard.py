"""The dashboard over HTTP (no browser): every page renders what the project holds, the charts
are drawn server-side, and every refusal (no token, weak role, CSRF, cross-site post, unknown
request id, SQL in a filter) leaves the project as it was."""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from browser_helpers import (
    CHURN,
    FINISHED,
    FIRST_REQUEST,
    FRAUD,
    OPERATOR,
    TO_ABORT,
    TO_PROMOTE,
    VIEWER,
    Seeded,
    seed,
)
from fastapi.testclient import TestClient
from sqlalchemy import select

from shipyard.monitoring import drift, slo
from shipyard.project import Project
from shipyard.release import rollouts
from shipyard.release.controller import Controller
from shipyard.store.models import AuditEventRecord, RolloutDecisionRecord
from shipyard.ui.app import create_app
from shipyard.ui.dashboard import COOKIE, csrf_token
from shipyard.ui.pages import runs as run_pages
from shipyard.ui.pages.charts import LEGEND_CHAR, THRESHOLD_SPACING, line_chart, step_chart
from shipyard.ui.pages.common import exact_percent


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    found = seed(tmp_path_factory.mktemp("dashboard"))
    # One controller pass: the live rollouts get an analysed (inconclusive) step to show.
    later = datetime.now(UTC) + timedelta(seconds=1)
    Controller(found.project, clock=lambda: later).tick()
    yield found
    found.project.close()


@pytest.fixture(scope="module")
def app(seeded: Seeded) -> TestClient:
    return TestClient(create_app(seeded.project), follow_redirects=False)


def client_as(seeded: Seeded, owner: str | None) -> TestClient:
    client = TestClient(create_app(seeded.project), follow_redirects=False)
    if owner is not None:
        client.cookies.set(COOKIE, seeded.secrets[owner])
    return client


@pytest.fixture(scope="module")
def operator(seeded: Seeded) -> TestClient:
    return client_as(seeded, OPERATOR)


@pytest.fixture(scope="module")
def viewer(seeded: Seeded) -> TestClient:
    return client_as(seeded, VIEWER)


def _testids(html: str) -> set[str]:
    return set(re.findall(r'data-testid="([^"]+)"', html))


def _state(project: Project, name: str) -> tuple[str, dict[str, float], int]:
    rollout = rollouts.get(name, project=project)
    with project.metadata.read() as session:
        decisions = len(
            session.scalars(
                select(RolloutDecisionRecord.id).where(
                    RolloutDecisionRecord.rollout_id == rollout.id
                )
            ).all()
        )
    return rollout.status, dict(rollout.weights), decisions


def _audit(project: Project) -> list[AuditEventRecord]:
    with project.metadata.read() as session:
        rows = session.scalars(select(AuditEventRecord).order_by(AuditEventRecord.id)).all()
        session.expunge_all()
        return list(rows)


# -- signing in -------------------------------------------------------------------------------


def test_a_page_without_a_token_sends_to_the_login_with_the_reason(app: TestClient) -> None:
    response = app.get("/ui/slos?model=churn")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/ui/login?reason=sign+in")
    assert "next=%2Fui%2Fslos%3Fmodel%3Dchurn" in response.headers["location"]
    login = app.get(response.headers["location"])
    assert login.status_code == 200 and "sign in with an API token" in login.text
    assert 'data-testid="login-form"' in login.text


def test_login_sets_an_httponly_strict_cookie_and_a_bad_token_is_refused(
    seeded: Seeded, app: TestClient
) -> None:
    wrong = app.post("/ui/login", data={"token": "shy_aaaaaaaaaaaa_" + "x" * 40})
    assert wrong.status_code == 401 and "unknown API token" in wrong.text
    assert "set-cookie" not in wrong.headers
    good = app.post("/ui/login", data={"token": seeded.secrets[OPERATOR], "next": "/ui/runs"})
    assert good.status_code == 303 and good.headers["location"] == "/ui/runs"
    cookie = good.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie
    assert "SameSite=strict" in cookie and "Path=/" in cookie
    # Never back to another site after signing in.
    elsewhere = app.post(
        "/ui/login", data={"token": seeded.secrets[OPERATOR], "next": "https://evil.example/"}
    )
    assert elsewhere.headers["location"] == "/ui/"


def test_a_revoked_token_is_sent_back_to_the_login(seeded: Seeded) -> None:
    from shipyard.ui import tokens

    secret, token = tokens.create("gone", "viewer", project=seeded.project)
    tokens.revoke(token.public_id, project=seeded.project)
    client = TestClient(create_app(seeded.project), follow_redirects=False)
    client.cookies.set(COOKIE, secret)
    response = client.get("/ui/")
    assert response.status_code == 303 and "was+revoked" in response.headers["location"]


# -- the pages --------------------------------------------------------------------------------


def test_every_page_renders_what_the_project_holds(seeded: Seeded, viewer: TestClient) -> None:
    runs = seeded.runs
    pages = {
        "/ui/": ["models-table", "slo-status-table", "live-rollout-split"],
        f"/ui/models/{CHURN}": ["versions-table"],
        f"/ui/models/{CHURN}/3": ["lineage-graph", "signature-inputs", "diff"],
        "/ui/rollouts": ["rollouts-table"],
        f"/ui/rollouts/{FINISHED}": ["split-chart", "decisions-table"],
        "/ui/slos": ["burn-down-chart", "burn-rate-chart"],
        "/ui/drift": ["drift-models-table"],
        f"/ui/drift/{CHURN}": ["drift-histogram", "drift-trend", "drift-summary-table"],
        "/ui/predictions": ["predictions-table", "predictions-search"],
        f"/ui/predictions/{FIRST_REQUEST}": ["prediction-inputs", "prediction-output"],
        "/ui/runs": ["runs-table"],
        f"/ui/runs/compare?ids={runs[0]},{runs[2]}": ["runs-compare-table"],
    }
    for path, testids in pages.items():
        response = viewer.get(path)
        assert response.status_code == 200, (path, response.text[:500])
        missing = set(testids) - _testids(response.text)
        assert not missing, (path, missing)
        # Offline: nothing but our own files, and the stylesheet and script are ours.
        assert not re.search(r'(src|href)="(https?:)?//', response.text), path
        assert "/ui/static/style.css" in response.text
        assert "Content-Security-Policy" in response.headers
    overview = viewer.get("/ui/").text
    assert "v2 90% / v3 10%" in overview  # the live split, from the champion v2
    assert viewer.get("/ui/static/style.css").headers["content-type"].startswith("text/css")
    assert viewer.get("/ui/static/dashboard.js").status_code == 200
    assert viewer.get("/ui/static/..%2Fdashboard.py").status_code == 404


def test_the_model_version_page_shows_lineage_and_the_diff_against_the_champion(
    viewer: TestClient,
) -> None:
    html = viewer.get(f"/ui/models/{CHURN}/3").text
    graph = re.search(r'<svg class="lineage".*?</svg>', html, re.S)
    assert graph is not None
    # churn-train@N -> churn@3 -> churn-v3 (the live rollout): three boxes, two edges.
    assert graph.group(0).count('class="node ') == 3 and graph.group(0).count('class="edge"') == 2
    assert 'data-kind="dataset"' in graph.group(0) and 'data-kind="rollout"' in graph.group(0)
    assert "From churn@2 (champion) to churn@3" in html
    assert "age" in html  # the signature's inputs


def test_the_rollout_page_draws_the_split_and_the_analysis(
    seeded: Seeded, viewer: TestClient
) -> None:
    decisions = rollouts.history(FINISHED, project=seeded.project)
    html = viewer.get(f"/ui/rollouts/{FINISHED}").text
    chart = re.search(r'data-testid="split-chart".*?</svg>', html, re.S)
    assert chart is not None
    arms = {arm for d in decisions for arm in d.after["weights"]}  # v1, v2
    assert chart.group(0).count('<circle class="point"') == len(decisions) * len(arms)
    assert html.count('data-testid="decision-row"') == len(decisions) == 2
    # The start decision stores its "before" as a bare split ({"v1": 100.0}): it is shown.
    start = re.search(r'data-action="start">(.*?)</tr>', html, re.S)
    assert start is not None and "<td>v1 100%</td><td>v1 90% / v2 10%</td>" in start.group(0)
    live = viewer.get(f"/ui/rollouts/{TO_ABORT}").text
    assert 'data-testid="analysis"' in live and "error_rate" in live and "max 0.2" in live


def test_a_time_axis_never_shows_one_time_twice() -> None:
    at = datetime(2026, 11, 26, 10, 52, 31, tzinfo=UTC)
    one = step_chart([at], {"v1": [90.0], "v2": [10.0]}, end=at, title="one decision")
    assert [t.label for t in one.x_ticks] == ["11-26 10:52:31"]
    seconds = step_chart([at], {"v1": [100.0]}, end=at + timedelta(seconds=4), title="seconds")
    assert [t.label for t in seconds.x_ticks] == ["11-26 10:52:31", "11-26 10:52:35"]
    # Seconds across a minute's turn still read to the second, not as 10:52 to 10:53.
    turn = step_chart([at], {"v1": [100.0]}, end=at + timedelta(seconds=40), title="turn")
    assert [t.label for t in turn.x_ticks] == ["11-26 10:52:31", "11-26 10:53:11"]
    hours = step_chart([at], {"v1": [100.0]}, end=at + timedelta(hours=2), title="hours")
    assert [t.label for t in hours.x_ticks] == ["11-26 10:52", "11-26 12:52"]


def test_the_slo_page_draws_one_point_per_stored_evaluation(
    seeded: Seeded, viewer: TestClient
) -> None:
    stored = slo.history(CHURN, "availability", project=seeded.project)
    html = viewer.get("/ui/slos?model=churn").text
    burn_down = re.search(r'data-testid="burn-down-chart".*?</svg>', html, re.S)
    assert burn_down is not None and len(stored) == 8
    assert burn_down.group(0).count('<circle class="point"') == len(stored)
    burn_rate = re.search(r'data-testid="burn-rate-chart".*?</svg>', html, re.S)
    assert burn_rate is not None and 'class="threshold"' in burn_rate.group(0)
    # The objective 0.99 reads 99%, with no trailing zeros (here and on the overview).
    row = re.search(r'data-testid="slo-row" data-slo="churn/availability">(.*?)</tr>', html, re.S)
    assert row is not None and '<td class="number">99%</td>' in row.group(1)
    assert "99.0000%" not in html and "99.0000%" not in viewer.get("/ui/").text
    assert [exact_percent(v) for v in (0.999, 0.9995, 1, 0.5)] == ["99.9%", "99.95%", "100%", "50%"]


def test_legends_wrap_inside_the_canvas_and_threshold_labels_stay_off_the_plot() -> None:
    at = datetime(2024, 5, 1, 13, 30, tzinfo=UTC)
    times = [at + timedelta(minutes=30 * i) for i in range(3)]
    windows = ["5m", "30m", "1h", "6h", "1d", "3d"] + [f"a long series name {i}" for i in range(4)]
    chart = line_chart(
        times,
        {w: [0.5, 1.0, 1.5] for w in windows},
        title="burn rates",
        y_label="burn rate",
        thresholds=[(1.0, "ticket 1x (3d)"), (1.2, "ticket 1.2x (1d)"), (14.4, "page 14.4x (1h)")],
    )
    assert [e.name for e in chart.legend] == windows and len({e.y for e in chart.legend}) > 1
    for entry in chart.legend:
        assert entry.text_x + len(entry.name) * LEGEND_CHAR <= chart.frame.width, entry
        assert entry.y <= chart.height
    labels = sorted(t.label_y for t in chart.thresholds)
    assert all(b - a >= THRESHOLD_SPACING for a, b in itertools.pairwise(labels))
    assert chart.frame.right + 6 + len("page 14.4x (1h)") * 5.6 <= chart.frame.width


def test_the_drift_page_overlays_the_histograms_and_trends_each_feature(
    seeded: Seeded, viewer: TestClient
) -> None:
    latest = drift.latest(CHURN, project=seeded.project)
    assert latest is not None
    html = viewer.get(f"/ui/drift/{CHURN}").text
    age = re.search(r'data-testid="drift-feature" data-column="age".*?</section>', html, re.S)
    assert age is not None
    bins = len(latest.column("age")["histogram"]["reference"])
    reference = re.search(r'data-series="reference".*?</g>', age.group(0), re.S)
    assert reference is not None and reference.group(0).count("<rect") == bins
    trend = re.search(r'<svg class="trend".*?</svg>', age.group(0), re.S)
    assert trend is not None and trend.group(0).count('class="point"') == 4  # four windows
    assert viewer.get("/ui/drift/nope").status_code == 404


# -- actions ----------------------------------------------------------------------------------


def test_an_operator_promotes_from_the_page_as_themself(
    seeded: Seeded, operator: TestClient
) -> None:
    page = operator.get(f"/ui/rollouts/{TO_PROMOTE}").text
    assert 'data-testid="promote-button"' in page and 'data-testid="abort-button"' in page
    csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert csrf is not None
    response = operator.post(f"/ui/rollouts/{TO_PROMOTE}/promote", data={"csrf": csrf.group(1)})
    assert response.status_code == 303, response.text[:300]
    assert rollouts.get(TO_PROMOTE, project=seeded.project).status == "promoted"
    assert rollouts.history(TO_PROMOTE, project=seeded.project)[-1].actor == OPERATOR
    event = _audit(seeded.project)[-1]
    assert (event.actor, event.action, event.outcome, event.via) == (
        OPERATOR,
        "rollout.promote",
        "done",
        "dashboard",
    )
    shown = operator.get(response.headers["location"]).text
    assert 'data-testid="flash"' in shown and "promoted" in shown
    assert 'data-testid="promote-button"' not in shown  # nothing left to do on an ended rollout


def test_a_viewer_sees_no_buttons_and_is_refused_the_action(
    seeded: Seeded, viewer: TestClient
) -> None:
    before = _state(seeded.project, TO_ABORT)
    page = viewer.get(f"/ui/rollouts/{TO_ABORT}").text
    assert 'data-testid="abort-button"' not in page and 'data-testid="actions-refused"' in page
    csrf = csrf_token(seeded.secrets[VIEWER])
    response = viewer.post(f"/ui/rollouts/{TO_ABORT}/abort", data={"csrf": csrf})
    assert response.status_code == 403
    assert (
        "needs the operator role" in response.text and 'data-testid="error-page"' in response.text
    )
    assert _state(seeded.project, TO_ABORT) == before
    assert _audit(seeded.project)[-1].outcome == "refused"


@pytest.mark.parametrize(
    ("data", "headers"),
    [
        ({}, {}),
        ({"csrf": "0" * 64}, {}),
        ({"csrf": "forged"}, {}),
        ("good", {"origin": "https://evil.example"}),
        ("good", {"referer": "https://evil.example/page"}),
    ],
    ids=["missing", "wrong", "malformed", "other-origin", "other-referer"],
)
def test_a_forged_form_is_refused_and_changes_nothing(
    seeded: Seeded, operator: TestClient, data: object, headers: dict[str, str]
) -> None:
    before = _state(seeded.project, TO_ABORT)
    events = len(_audit(seeded.project))
    form = {"csrf": csrf_token(seeded.secrets[OPERATOR])} if data == "good" else data
    response = operator.post(f"/ui/rollouts/{TO_ABORT}/abort", data=form, headers=headers)
    assert response.status_code == 403
    assert "Nothing was changed" in response.text and "Traceback" not in response.text
    assert _state(seeded.project, TO_ABORT) == before
    assert len(_audit(seeded.project)) == events  # refused before reaching any action


def test_a_post_without_a_token_is_401_and_open_reads_hide_the_buttons(seeded: Seeded) -> None:
    before = _state(seeded.project, TO_ABORT)
    opened = dataclasses.replace(
        seeded.project, settings=seeded.project.settings.model_copy(update={"open_reads": True})
    )
    anonymous = TestClient(create_app(opened), follow_redirects=False)
    page = anonymous.get(f"/ui/rollouts/{TO_ABORT}")
    assert page.status_code == 200 and 'data-testid="abort-button"' not in page.text
    assert 'data-testid="login-link"' in page.text
    refused = anonymous.post(f"/ui/rollouts/{TO_ABORT}/abort", data={"csrf": "x"})
    assert refused.status_code == 401 and "sign in" in refused.text.lower()
    assert _state(seeded.project, TO_ABORT) == before


def test_an_operator_pauses_and_resumes(seeded: Seeded, operator: TestClient) -> None:
    csrf = csrf_token(seeded.secrets[OPERATOR])
    assert operator.post(f"/ui/rollouts/{TO_ABORT}/pause", data={"csrf": csrf}).status_code == 303
    assert rollouts.get(TO_ABORT, project=seeded.project).status == "paused"
    again = operator.post(f"/ui/rollouts/{TO_ABORT}/pause", data={"csrf": csrf})
    assert again.status_code == 409 and "is paused" in again.text
    assert operator.post(f"/ui/rollouts/{TO_ABORT}/resume", data={"csrf": csrf}).status_code == 303
    assert rollouts.get(TO_ABORT, project=seeded.project).status == "running"
    assert operator.post(f"/ui/rollouts/{TO_ABORT}/explode", data={"csrf": csrf}).status_code == 404


def test_replay_shows_the_result(seeded: Seeded, viewer: TestClient) -> None:
    csrf = csrf_token(seeded.secrets[VIEWER])
    response = viewer.post(f"/ui/predictions/{FIRST_REQUEST}/replay", data={"csrf": csrf})
    assert response.status_code == 200, response.text[:300]
    assert 'data-testid="replay-result"' in response.text
    assert re.search(r'data-verdict="(identical|close|different)"', response.text)
    assert viewer.post("/ui/predictions/nope/replay", data={"csrf": csrf}).status_code == 404


# -- predictions and runs ---------------------------------------------------------------------


def test_an_unknown_request_id_or_page_is_a_404_page(viewer: TestClient) -> None:
    for path in ("/ui/predictions/no-such-request", "/ui/nowhere", f"/ui/models/{CHURN}/99"):
        response = viewer.get(path)
        assert response.status_code == 404, path
        assert 'data-testid="error-page"' in response.text and "Traceback" not in response.text
        assert f'<span data-testid="who-name">{VIEWER}</span>' in response.text, path


def test_error_pages_show_who_is_signed_in(seeded: Seeded, viewer: TestClient) -> None:
    refused = viewer.post(f"/ui/rollouts/{TO_ABORT}/abort", data={"csrf": "0" * 64})
    assert refused.status_code == 403 and 'data-testid="error-page"' in refused.text
    assert f'<span data-testid="who-name">{VIEWER}</span>' in refused.text
    assert 'data-testid="logout-button"' in refused.text
    invalid = viewer.get("/ui/predictions", params={"since": "yesterday"})
    assert invalid.status_code == 422 and 'data-testid="who-name"' in invalid.text
    anonymous = TestClient(create_app(seeded.project), follow_redirects=False)
    nobody = anonymous.post(f"/ui/rollouts/{TO_ABORT}/abort", data={"csrf": "x"})
    assert nobody.status_code == 401 and 'data-testid="who-name"' not in nobody.text


def test_sql_in_a_filter_is_a_plain_value(viewer: TestClient) -> None:
    for field in ("request_id", "model", "arm"):
        response = viewer.get("/ui/predictions", params={field: "x' OR 1=1 --"})
        assert response.status_code == 200
        assert 'data-testid="no-predictions"' in response.text
    assert viewer.get("/ui/predictions", params={"version": "1; DROP"}).status_code == 422
    bad_time = viewer.get("/ui/predictions", params={"since": "yesterday'--"})
    assert bad_time.status_code == 422 and "since must be a time" in bad_time.text
    assert viewer.get("/ui/runs", params={"status": "x' OR 1=1 --"}).status_code == 422
    assert viewer.get("/ui/predictions", params={"after": "garbage"}).status_code == 422


def test_predictions_page_through_the_log_newest_first(viewer: TestClient) -> None:
    def page(params: dict[str, str]) -> tuple[list[str], str | None]:
        html = viewer.get("/ui/predictions", params=params).text
        ids = re.findall(r'data-testid="prediction-row" data-request-id="([^"]+)"', html)
        following = re.search(r'data-testid="pager-next" href="\?([^"]+)"', html)
        return ids, following.group(1).replace("&amp;", "&") if following else None

    first, following = page({"model": CHURN, "version": "1"})
    assert len(first) == 50 and following is not None and "after=" in following
    second = viewer.get(f"/ui/predictions?{following}").text
    second_ids = re.findall(r'data-testid="prediction-row" data-request-id="([^"]+)"', second)
    assert len(second_ids) == 50 and not set(first) & set(second_ids)
    assert first[0].startswith(("drift3-", "failed3-"))  # the newest hour first
    only, more = page({"request_id": FIRST_REQUEST})
    assert only == [FIRST_REQUEST] and more is None
    fraud, _ = page({"model": FRAUD, "since": "2024-05-01T13:00", "until": "2024-05-01T14:00"})
    assert fraud and all(i.startswith("fraud") for i in fraud)


def test_runs_page_through_with_a_keyset_and_compare(seeded: Seeded, viewer: TestClient) -> None:
    first = run_pages.runs_page(seeded.project, pipeline=None, status=None, after=None, size=2)
    assert [r["id"] for r in first["runs"]] == seeded.runs[::-1][:2] and first["next"]
    rest = run_pages.runs_page(
        seeded.project, pipeline=None, status=None, after=first["next"], size=2
    )
    assert [r["id"] for r in rest["runs"]] == [seeded.runs[0]] and rest["next"] is None
    html = viewer.get("/ui/runs", params={"status": "finished"}).text
    assert html.count('data-testid="run-row"') == 3
    compared = viewer.get(f"/ui/runs/compare?id={seeded.runs[0]}&id={seeded.runs[1]}").text
    assert 'data-key="parameters.C" data-differs="true"' in compared
    assert viewer.get("/ui/runs/compare?ids=").status_code == 422


def test_sign_out_clears_the_cookie(seeded: Seeded) -> None:
    client = client_as(seeded, VIEWER)
    refused = client.post("/ui/logout", data={"csrf": "wrong"})
    assert refused.status_code == 403
    response = client.post("/ui/logout", data={"csrf": csrf_token(seeded.secrets[VIEWER])})
    assert response.status_code == 303 and "signed+out" in response.headers["location"]
    assert response.headers["set-cookie"].startswith(f'{COOKIE}=""')
