"""Monitoring: Prometheus metrics, drift against the training data's profile, SLOs and error
budgets with burn-rate alerts, and model quality from delayed labels (measured and estimated)."""
