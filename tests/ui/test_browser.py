"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright, against a
real `shipyard ui` on 127.0.0.1 serving a seeded project (a finished rollout, two live ones,
drift results, SLO evaluations, logged predictions, runs).

Every page renders with no console error, page error or failed request, and asks nothing of
any host but 127.0.0.1 (such requests are aborted and fail the test: the dashboard works
offline); the charts draw; an operator promotes one rollout and aborts another from the page
and the store agrees; a viewer sees no buttons and a forged form is refused with 403, nothing
changed. Screenshots of the main pages land in test-artifacts/screenshots/.

One browser for the module and one context per role, signed in once through the login form.
The tests run in file order: the read-only pages and the viewer's refusals come before the
operator's changes.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import (
    CHROMIUM_FLAGS,
    CHURN,
    FINISHED,
    FIRST_REQUEST,
    FRAUD,
    OPERATOR,
    SCREENSHOTS,
    TO_ABORT,
    TO_PROMOTE,
    VIEWER,
    Seeded,
    Server,
    Trouble,
    chromium_path,
    seed,
    ui_server,
    watch,
)
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from shipyard.release import rollouts

VIEWPORT = {"width": 1280, "height": 900}


@dataclass
class Session:
    """One role's signed-in browser context and its page."""

    context: BrowserContext
    page: Page
    trouble: Trouble

    def visit(self, path: str) -> int:
        response = self.page.goto(path)
        assert response is not None, f"no response for {path}"
        return int(response.status)

    def assert_clean(self) -> None:
        assert self.trouble.summary() == {}, self.trouble.summary()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    made = seed(tmp_path_factory.mktemp("dashboard"))
    yield made
    made.project.close()


@pytest.fixture(scope="module")
def server(seeded: Seeded) -> Iterator[Server]:
    with ui_server(seeded.folder) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)  # this run's screenshots only
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_FLAGS
        )
        yield launched
        launched.close()


def _sign_in(browser: Browser, server: Server, secret: str) -> Session:
    """A fresh context, signed in through the login form like a person would."""
    context = browser.new_context(base_url=server.url, viewport=VIEWPORT)  # type: ignore[arg-type]
    trouble = watch(context)
    page = context.new_page()
    page.goto("/ui/login")
    page.get_by_test_id("login-token").fill(secret)
    page.get_by_test_id("login-submit").click()
    page.wait_for_url(f"{server.url}/ui/")
    return Session(context, page, trouble)


@pytest.fixture(scope="module")
def viewer(browser: Browser, server: Server, seeded: Seeded) -> Iterator[Session]:
    session = _sign_in(browser, server, seeded.secrets[VIEWER])
    yield session
    session.context.close()


@pytest.fixture(scope="module")
def operator(browser: Browser, server: Server, seeded: Seeded) -> Iterator[Session]:
    session = _sign_in(browser, server, seeded.secrets[OPERATOR])
    yield session
    session.context.close()


def _screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


# -- signing in -------------------------------------------------------------------------------


def test_signing_in_through_the_form_keeps_the_token_in_an_httponly_cookie(
    viewer: Session, operator: Session
) -> None:
    for session, owner, role in ((viewer, VIEWER, "viewer"), (operator, OPERATOR, "operator")):
        assert session.page.get_by_test_id("who-name").inner_text() == owner
        assert session.page.get_by_test_id("who-role").inner_text() == role
        (cookie,) = [c for c in session.context.cookies() if c["name"] == "shipyard_token"]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        # The page's own script cannot read it.
        assert "shipyard_token" not in session.page.evaluate("document.cookie")
        session.assert_clean()


def test_a_wrong_token_is_refused_at_the_form(browser: Browser, server: Server) -> None:
    context = browser.new_context(base_url=server.url)
    try:
        trouble = watch(context)
        page = context.new_page()
        page.goto("/ui/runs")  # not signed in: sent to the form, which remembers where to
        assert page.url.startswith(f"{server.url}/ui/login")
        page.get_by_test_id("login-token").fill("shy_aaaaaaaaaaaa_" + "x" * 40)
        with page.expect_response(lambda r: r.request.method == "POST") as posted:
            page.get_by_test_id("login-submit").click()
        assert posted.value.status == 401
        assert page.get_by_test_id("login-reason").is_visible()
        assert not [c for c in context.cookies() if c["name"] == "shipyard_token"]
        # The browser reports the 401 of the form post itself; nothing else went wrong.
        trouble.console[:] = [m for m in trouble.console if "401" not in m]
        assert trouble.summary() == {}
    finally:
        context.close()


def test_a_request_to_another_host_is_caught_before_it_leaves(operator: Session) -> None:
    """The offline check below is only as good as this trap."""
    operator.trouble.clear()
    # A tab of its own: the aborted navigation leaves it heading to Chrome's error page, which
    # would interrupt the next navigation of a shared tab.
    tab = operator.context.new_page()
    try:
        with pytest.raises(PlaywrightError):
            tab.goto("http://cdn.example.com/chart.js")
        assert operator.trouble.external == ["http://cdn.example.com/chart.js"]
    finally:
        tab.close()
    operator.trouble.clear()


# -- every page -------------------------------------------------------------------------------

# name -> (path, a data-testid the page must show)
PAGES = {
    "overview": ("/ui/", "models-table"),
    "model": (f"/ui/models/{CHURN}", "versions-table"),
    "model-version": (f"/ui/models/{CHURN}/3", "lineage-graph"),
    "rollouts": ("/ui/rollouts", "rollouts-table"),
    "rollout-live": (f"/ui/rollouts/{TO_PROMOTE}", "split-chart"),
    "rollout-finished": (f"/ui/rollouts/{FINISHED}", "decisions-table"),
    "slos": ("/ui/slos", "slo-charts"),
    "drift-index": ("/ui/drift", "drift-models-table"),
    "drift": (f"/ui/drift/{CHURN}", "drift-summary-table"),
    "predictions": ("/ui/predictions", "predictions-table"),
    "predictions-search": (
        f"/ui/predictions?model={CHURN}&version=1&request_id={FIRST_REQUEST}",
        "prediction-row",
    ),
    "prediction": (f"/ui/predictions/{FIRST_REQUEST}", "prediction-inputs"),
    "runs": ("/ui/runs", "runs-table"),
}


@pytest.mark.parametrize("name", list(PAGES))
def test_every_page_renders_without_an_error_or_a_request_elsewhere(
    operator: Session, name: str
) -> None:
    path, testid = PAGES[name]
    operator.trouble.clear()
    assert operator.visit(path) == 200
    assert operator.page.get_by_test_id(testid).first.is_visible()
    assert operator.page.get_by_test_id("error-page").count() == 0
    _screenshot(operator.page, name)
    operator.assert_clean()


def test_runs_are_compared_side_by_side(operator: Session, seeded: Seeded) -> None:
    operator.trouble.clear()
    operator.visit("/ui/runs")
    rows = operator.page.get_by_test_id("run-row")
    assert rows.count() == len(seeded.runs)
    for run_id in seeded.runs[:2]:
        operator.page.locator(f"input[type=checkbox][value='{run_id}']").check()
    operator.page.get_by_test_id("compare-submit").click()
    operator.page.wait_for_url("**/ui/runs/compare**")
    assert operator.page.get_by_test_id("compared-run").count() == 2
    table = operator.page.get_by_test_id("runs-compare-table").inner_text()
    assert "max_depth" in table and "accuracy" in table
    _screenshot(operator.page, "runs-compare")
    operator.assert_clean()


# -- charts -----------------------------------------------------------------------------------


def _drawn(page: Page, selector: str) -> list[dict[str, float]]:
    """The bounding boxes of the visible marks `selector` finds, with area > 0."""
    boxes = []
    for mark in page.locator(selector).all():
        box = mark.bounding_box()
        if box is not None and box["width"] > 0 and box["height"] > 0:
            boxes.append(box)
    return boxes


def _inside(inner: dict[str, float], outer: dict[str, float]) -> bool:
    slack = 4.0  # a point's radius may reach over the plot's edge
    return (
        inner["x"] >= outer["x"] - slack
        and inner["y"] >= outer["y"] - slack
        and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + slack
        and inner["y"] + inner["height"] <= outer["y"] + outer["height"] + slack
    )


def _chart(page: Page, testid: str, marks: str, at_least: int) -> None:
    figure = page.get_by_test_id(testid).first
    svg = figure.locator("svg").first
    box = svg.bounding_box()
    assert box is not None and box["width"] > 100 and box["height"] > 50, (testid, box)
    drawn = _drawn(page, f"[data-testid='{testid}'] >> nth=0 >> {marks}")
    assert len(drawn) >= at_least, (testid, marks, len(drawn))
    assert all(_inside(mark, box) for mark in drawn), (testid, drawn, box)


def test_the_charts_draw(operator: Session) -> None:
    operator.trouble.clear()
    page = operator.page
    operator.visit(f"/ui/rollouts/{FINISHED}")  # start, promote: the split moved twice
    _chart(page, "split-chart", "svg circle.point", 2)
    assert page.locator("[data-testid='split-chart'] svg path").count() >= 1

    operator.visit("/ui/slos")  # 8 stored evaluations of churn's availability
    _chart(page, "burn-down-chart", "svg circle.point", 8)
    _chart(page, "burn-rate-chart", "svg circle.point", 8)

    operator.visit(f"/ui/drift/{CHURN}")  # 4 windows: the trend has 4 points
    histogram = page.get_by_test_id("drift-histogram").first
    series = histogram.locator("svg g.series")
    assert series.count() == 2  # reference and current, overlaid
    for index in range(2):
        bars = _drawn(page, f"[data-testid='drift-histogram'] >> nth=0 >> svg g.series >> "
                            f"nth={index} >> rect")  # fmt: skip
        assert len(bars) >= 3
    _chart(page, "drift-trend", "svg circle.point", 4)
    operator.assert_clean()


# -- the viewer is refused --------------------------------------------------------------------


def _forge(page: Page, action: str) -> Any:
    """Post a form the page does not offer, with the viewer's own valid CSRF field (from the
    sign-out form): only the role can refuse it."""
    csrf = page.locator("form[action$='/logout'] input[name=csrf]").input_value()
    assert csrf
    with page.expect_navigation():
        page.evaluate(
            """([action, csrf]) => {
                const form = document.createElement("form");
                form.method = "post";
                form.action = action;
                const field = document.createElement("input");
                field.type = "hidden"; field.name = "csrf"; field.value = csrf;
                form.appendChild(field);
                document.body.appendChild(form);
                form.submit();
            }""",
            [action, csrf],
        )


@pytest.mark.parametrize(("name", "verb"), [(TO_PROMOTE, "promote"), (TO_ABORT, "abort")])
def test_a_viewer_sees_no_buttons_and_a_forged_form_is_refused(
    viewer: Session, seeded: Seeded, name: str, verb: str
) -> None:
    before = rollouts.get(name, project=seeded.project)
    viewer.trouble.clear()
    assert viewer.visit(f"/ui/rollouts/{name}") == 200
    for action in ("promote", "pause", "resume", "abort"):
        assert viewer.page.get_by_test_id(f"{action}-button").count() == 0
    assert "operator role" in viewer.page.get_by_test_id("actions-refused").inner_text()
    _screenshot(viewer.page, f"rollout-viewer-{verb}")

    _forge(viewer.page, f"/ui/rollouts/{before.id}/{verb}")
    error = viewer.page.get_by_test_id("error-page")
    assert error.get_attribute("data-status") == "403"
    assert "operator" in viewer.page.get_by_test_id("error-message").inner_text()
    _screenshot(viewer.page, f"refused-{verb}")
    after = rollouts.get(name, project=seeded.project)
    assert before.status == after.status == "running"
    assert after.weights == before.weights
    assert len(rollouts.history(name, project=seeded.project)) == 1  # just the start
    # The browser logs the 403 it was answered with; nothing else went wrong.
    viewer.trouble.console[:] = [m for m in viewer.trouble.console if "403" not in m]
    viewer.assert_clean()


# -- the operator acts ------------------------------------------------------------------------


def test_an_operator_promotes_a_rollout_from_the_page(operator: Session, seeded: Seeded) -> None:
    operator.trouble.clear()
    page = operator.page
    operator.visit(f"/ui/rollouts/{TO_PROMOTE}")
    assert page.get_by_test_id("rollout-status").inner_text() == "running"
    page.get_by_test_id("promote-button").click()
    page.wait_for_url("**done=promote")
    assert page.get_by_test_id("rollout-status").inner_text() == "promoted"
    assert page.get_by_test_id("flash").is_visible()
    assert page.get_by_test_id("promote-button").count() == 0  # nothing left to do
    _screenshot(page, "rollout-promoted")

    stored = rollouts.get(TO_PROMOTE, project=seeded.project)
    assert stored.status == "promoted"
    assert rollouts.champion_of(CHURN, project=seeded.project) == 3
    last = rollouts.history(TO_PROMOTE, project=seeded.project)[-1]
    assert (last.action, last.actor) == ("promote", OPERATOR)  # the token's owner
    operator.assert_clean()


def test_an_operator_aborts_a_rollout_from_the_page(operator: Session, seeded: Seeded) -> None:
    operator.trouble.clear()
    page = operator.page
    operator.visit(f"/ui/rollouts/{TO_ABORT}")
    page.get_by_test_id("abort-button").click()
    page.wait_for_url("**done=abort")
    assert page.get_by_test_id("rollout-status").inner_text() == "aborted"

    stored = rollouts.get(TO_ABORT, project=seeded.project)
    assert stored.status == "aborted"
    assert rollouts.champion_of(FRAUD, project=seeded.project) == 1  # unchanged
    last = rollouts.history(TO_ABORT, project=seeded.project)[-1]
    assert (last.action, last.actor) == ("abort", OPERATOR)
    operator.visit("/ui/")  # the overview no longer lists a live rollout of either model
    assert page.get_by_test_id("live-rollout-link").count() == 0
    _screenshot(page, "overview-after")
    operator.assert_clean()


def test_screenshots_were_saved() -> None:
    saved = {path.stem for path in Path(SCREENSHOTS).glob("*.png")}
    assert {"overview", "rollout-live", "slos", "drift", "predictions", "runs"} <= saved
