"""Continuous training: triggers (a schedule, new data, drift, an SLO or quality breach) that run
the registered training pipeline on the newest data and hand its model to the gates and release."""
