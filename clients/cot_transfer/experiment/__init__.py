"""Experiment-side code: problem datasets, run reports."""
