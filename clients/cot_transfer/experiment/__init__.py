"""Experiment-side code: problem datasets, run reports, ``load(DIR)``: a results folder as
pandas DataFrames, and ``load_runs([DIR, ...])``: several side by side
(``cot_transfer.experiment.load``)."""

from cot_transfer.experiment.load import RunsTables, RunTables, load, load_runs

__all__ = ["RunTables", "RunsTables", "load", "load_runs"]
