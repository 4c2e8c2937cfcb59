"""Kept completions: a few per row by default, one per distinct answer first; the option's forms and
the run.json values of older runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cot_transfer.cli.main import build_parser
from cot_transfer.cli.run import settings_from_args
from cot_transfer.domain.kept_answers import chosen_completions
from cot_transfer.domain.requests import FractionResult, GradedCompletion
from cot_transfer.experiment.cut_settings import ALL_COMPLETIONS, DEFAULT_KEPT_COMPLETIONS
from cot_transfer.experiment.run_folder import RESULTS_FILE, _RowWriter
from cot_transfer.experiment.settings import ExperimentSettings


def sample(index: int, answer: str | None, text: str | None = None) -> GradedCompletion:
    return GradedCompletion(f"text {index}" if text is None else text, answer, answer == "7", 5, "stop")


def test_one_per_distinct_answer_first_in_sampled_order() -> None:
    completions = [sample(index, answer) for index, answer in enumerate(["7", "7", None, "7", "8", "9", "8", "7"])]

    def kept(limit: int) -> list[str]:
        return [completion.text for completion in chosen_completions(completions, limit)]

    # "7" (4 samples), "8" (2), "9" (1) before the sample stating none; sampled order kept.
    assert kept(3) == ["text 0", "text 4", "text 5"]
    assert kept(5) == ["text 0", "text 1", "text 2", "text 4", "text 5"]
    assert kept(20) == [completion.text for completion in completions]
    assert kept(0) == []


def test_a_repeated_text_is_kept_once() -> None:
    completions = [sample(0, "7", "same"), sample(1, "7", "same"), sample(2, "8", "other"), sample(3, "7", "same")]
    assert [completion.text for completion in chosen_completions(completions, 4)] == ["same", "other"]


@pytest.mark.parametrize(
    ("argv", "kept"),
    [
        ([], DEFAULT_KEPT_COMPLETIONS),
        (["--keep-completions"], ALL_COMPLETIONS),
        (["--keep-completions", "2"], 2),
        (["--no-completions"], 0),
    ],
)
def test_command_line_forms(argv: list[str], kept: int) -> None:
    args = build_parser().parse_args(["run", "--address", "x:1", "--out", "o", *argv])
    assert settings_from_args(args).keep_completions == kept


def test_a_bad_count_names_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--address", "x:1", "--out", "o", "--keep-completions", "-3"])
    assert "--keep-completions" in capsys.readouterr().err


def test_run_json_round_trip_keeps_older_hashes() -> None:
    # An older run without the key kept none; `--keep-completions` wrote true and kept all.
    assert "keep_completions" not in ExperimentSettings((0.5,), 4, keep_completions=0).to_json()
    assert ExperimentSettings((0.5,), 4, keep_completions=True).to_json()["keep_completions"] is True
    for kept in (0, 3, ALL_COMPLETIONS):
        stored = ExperimentSettings((0.5,), 4, keep_completions=kept).to_json()
        assert ExperimentSettings.from_json(stored).keep_completions == kept


def test_the_writer_keeps_the_chosen_few(tmp_path: Path) -> None:
    completions = tuple(sample(index, answer) for index, answer in enumerate(["7", "7", "8", "7"]))
    writer = _RowWriter(tmp_path, "hash", None, kept_completions=2)
    writer.add_result(FractionResult("p", 0.5, 3, 6, 4, 3, completions=completions))
    writer.close()
    (row,) = [json.loads(line) for line in (tmp_path / RESULTS_FILE).read_text().splitlines()]
    assert [completion["text"] for completion in row["completions"]] == ["text 0", "text 2"]
    assert (row["n"], row["num_correct"]) == (4, 3)  # the counts are of every sample
