"""Evaluation: datasets, metrics, judges, the runner, reports and comparisons (`tutor eval`)."""
