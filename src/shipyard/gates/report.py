"""Gate results and the report that holds them, with Markdown and HTML renderings.

Each result keeps its numbers in `details`; `details["checks"]` lists the comparisons it made
(`{"name", "value", "op", "threshold", "passed"}`), which the CLI and the exports show as
"key numbers vs thresholds".
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict, its numbers and the reasons for it."""

    name: str
    kind: str
    required: bool
    passed: bool
    details: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        if self.passed:
            return "passed"
        return "failed" if self.required else "failed (optional)"

    @property
    def checks(self) -> list[dict[str, Any]]:
        return list(self.details.get("checks", []))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "required": self.required,
            "passed": self.passed,
            "reasons": list(self.reasons),
            "details": self.details,
        }


@dataclass(frozen=True)
class GateReport:
    """Every gate of one policy run on one version; `passed` when every required gate passed."""

    report_id: str
    version: str
    policy: str
    results: list[GateResult]
    created_at: datetime
    created_by: str

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results if r.required)

    @property
    def failed(self) -> list[GateResult]:
        """The required gates that failed."""
        return [r for r in self.results if r.required and not r.passed]

    def result(self, name: str) -> GateResult:
        for found in self.results:
            if found.name == name:
                return found
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "report_id": self.report_id,
            "version": self.version,
            "policy": self.policy,
            "passed": self.passed,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "results": [r.to_dict() for r in self.results],
        }

    def to_markdown(self) -> str:
        """The report as Markdown: a summary table, then each gate's numbers and reasons."""
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [
            f"# Gate report: {self.version}, policy `{self.policy}`: {verdict}",
            "",
            f"Report `{self.report_id}`, run by {self.created_by} at "
            f"{self.created_at.isoformat(timespec='seconds')}.",
            "",
            "| gate | kind | required | verdict | numbers |",
            "|---|---|---|---|---|",
        ]
        for r in self.results:
            numbers = "; ".join(describe_check(c) for c in r.checks) or "-"
            lines.append(
                f"| {_md(r.name)} | {r.kind} | {'yes' if r.required else 'no'} | "
                f"{r.verdict} | {_md(numbers)} |"
            )
        for r in self.results:
            lines += ["", f"## {r.name} ({r.kind}): {r.verdict}", ""]
            lines += [f"- {_md(reason)}" for reason in r.reasons]
            rows = _table_rows(r)
            if rows:
                header, *body = rows
                lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in body]
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        """The report as one self-contained HTML page: no scripts, no external assets."""
        e = html.escape
        verdict = "PASSED" if self.passed else "FAILED"
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>Gate report {e(self.version)} ({e(self.policy)})</title>",
            "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}"
            "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;"
            "padding:.25em .6em;text-align:left;vertical-align:top}.passed{color:#17702a}"
            ".failed{color:#b00020}</style></head><body>",
            f"<h1>Gate report: {e(self.version)}, policy <code>{e(self.policy)}</code>: "
            f'<span class="{verdict.lower()}">{verdict}</span></h1>',
            f"<p>Report <code>{e(self.report_id)}</code>, run by {e(self.created_by)} at "
            f"{e(self.created_at.isoformat(timespec='seconds'))}.</p>",
            "<table><tr><th>gate</th><th>kind</th><th>required</th><th>verdict</th>"
            "<th>numbers</th></tr>",
        ]
        for r in self.results:
            css = "passed" if r.passed else "failed"
            numbers = "<br>".join(e(describe_check(c)) for c in r.checks) or "-"
            parts.append(
                f"<tr><td>{e(r.name)}</td><td>{e(r.kind)}</td>"
                f"<td>{'yes' if r.required else 'no'}</td>"
                f'<td class="{css}">{e(r.verdict)}</td><td>{numbers}</td></tr>'
            )
        parts.append("</table>")
        for r in self.results:
            css = "passed" if r.passed else "failed"
            parts.append(
                f'<h2>{e(r.name)} ({e(r.kind)}): <span class="{css}">{e(r.verdict)}</span></h2>'
            )
            if r.reasons:
                parts.append("<ul>" + "".join(f"<li>{e(x)}</li>" for x in r.reasons) + "</ul>")
            rows = _table_rows(r)
            if rows:
                header, *body = rows
                parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header))
                parts += [
                    "<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in row) + "</tr>"
                    for row in body
                ]
                parts.append("</table>")
        parts.append("</body></html>")
        return "\n".join(parts) + "\n"


def fmt(value: Any) -> str:
    """A number as people read it in a report; anything else as text."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def describe_check(check: dict[str, Any]) -> str:
    """`auc 0.8123 >= 0.7 ✓`-style text of one comparison."""
    mark = "ok" if check.get("passed") else "FAIL"
    threshold = check.get("threshold")
    bound = "" if threshold is None else f" {check.get('op', '')} {fmt(threshold)}"
    return f"{check['name']} {fmt(check.get('value'))}{bound} ({mark})"


def _table_rows(result: GateResult) -> list[list[str]]:
    """A gate's detail table, if it has one: slices, most changed rows, timings, failures."""
    details = result.details
    if result.kind == "slice" and details.get("slices"):
        rows = [["value", "rows", "metric", "gap", "judged", "passed"]]
        for s in details["slices"]:
            rows.append(
                [
                    fmt(s["value"]),
                    fmt(s["rows"]),
                    fmt(s["metric"]),
                    fmt(s["gap"]),
                    fmt(s["judged"]),
                    fmt(s["passed"]),
                ]
            )
        return rows
    if result.kind == "differential" and details.get("most_changed"):
        rows = [["row", "abs diff", "candidate", "champion", "inputs"]]
        for m in details["most_changed"]:
            rows.append(
                [
                    fmt(m["index"]),
                    fmt(m["abs_diff"]),
                    _prediction(m, "candidate"),
                    _prediction(m, "champion"),
                    fmt(m["inputs"]),
                ]
            )
        return rows
    if result.kind == "benchmark" and details.get("candidate"):
        rows = [["model", "p50 ms", "p99 ms", "rows/s"]]
        for who in ("candidate", "champion"):
            if details.get(who):
                t = details[who]
                rows.append(
                    [
                        f"{who} {t.get('version', '')}".strip(),
                        fmt(t["p50_ms"]),
                        fmt(t["p99_ms"]),
                        fmt(t["rows_per_s"]),
                    ]
                )
        return rows
    if result.kind == "data_validation" and details.get("failures"):
        rows = [["dataset", "column", "rule", "expected", "observed"]]
        for f in details["failures"]:
            rows.append([f["dataset"], f["column"], f["rule"], f["expected"], f["observed"]])
        return rows
    return []


def _prediction(row: dict[str, Any], who: str) -> str:
    """A prediction in the most-changed table: the score, and the label when there is one."""
    label = row.get(f"{who}_label")
    return fmt(row[who]) + ("" if label is None else f" (label {fmt(label)})")


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")
