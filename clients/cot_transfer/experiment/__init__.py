"""Experiment-side code: problem datasets, run reports, ``load(DIR)``: a results folder as
pandas DataFrames, and ``load_runs([DIR, ...])``: several side by side
(``cot_transfer.experiment.load``)."""

from cot_transfer.experiment.load import RunsTables, RunTables, load, load_runs
from cot_transfer.experiment.runner import run_experiment
from cot_transfer.experiment.settings import ExperimentSettings
from cot_transfer.experiment.sync_run import run

__all__ = ["ExperimentSettings", "RunTables", "RunsTables", "load", "load_runs", "run", "run_experiment"]
