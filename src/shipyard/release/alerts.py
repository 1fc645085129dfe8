"""Alerts a release raises (a rollout rolled back): to the log always, and to a webhook.

The webhook (`alert_webhook_url` in shipyard.toml) receives one JSON object per alert:
`{"alert": "rollout_rolled_back", "severity": "critical", "summary": ..., "rollout": ...,
"model": ..., "evidence": ...}`. Sending happens after the decision is committed and never
undoes it: a receiver that is down is retried a few times, then logged.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any

log = logging.getLogger("shipyard.release")

ATTEMPTS = 3
TIMEOUT_S = 5.0


def send(url: str | None, alert: dict[str, Any]) -> bool:
    """Log the alert and POST it to `url` (when set); True when the receiver took it."""
    log.error("ALERT %s: %s", alert.get("alert"), alert.get("summary"))
    if not url:
        return False
    body = json.dumps(alert, default=str).encode()
    request = urllib.request.Request(
        url, data=body, headers={"content-type": "application/json"}, method="POST"
    )
    for attempt in range(ATTEMPTS):
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
                if 200 <= answer.status < 300:
                    return True
        except (urllib.error.URLError, OSError) as exc:
            problem = str(exc)
        else:
            problem = f"status {answer.status}"
        if attempt < ATTEMPTS - 1:
            time.sleep(0.2 * 2**attempt)
    log.error("the alert webhook %s did not take the alert (%s)", url, problem)
    return False


def rolled_back(project: Any, rollout: Any, reason: str, evidence: dict[str, Any]) -> bool:
    return send(
        project.settings.alert_webhook_url,
        {
            "alert": "rollout_rolled_back",
            "severity": "critical",
            "summary": f"rollout {rollout.name} of {rollout.model} rolled back: {reason}",
            "rollout": rollout.name,
            "rollout_id": rollout.id,
            "model": rollout.model,
            "champion": rollout.champion,
            "candidate": rollout.candidate,
            "reason": reason,
            "evidence": evidence,
        },
    )
