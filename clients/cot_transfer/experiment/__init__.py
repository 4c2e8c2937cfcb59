"""Experiment-side code: problem datasets, run reports, and ``load(DIR)``: a results folder as
pandas DataFrames (``cot_transfer.experiment.load``)."""

from cot_transfer.experiment.load import RunTables, load

__all__ = ["RunTables", "load"]
