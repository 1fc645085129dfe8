"""The face of shipyard: the authenticated control API (FastAPI) and the dashboard (`shipyard ui`),
both views over the same Python API; API tokens and the audit trail of what they changed."""
