"""`cot-transfer run` reads native datasets (no server needed up to the first call) and a
resumed run reads the problems its folder keeps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cot_transfer.cli.main import build_parser, main
from cot_transfer.cli.run import UsageError, inputs_from_args
from cot_transfer.experiment.datasets import RUN_PROBLEMS_FILE, DatasetOptions, load_problems, save_run_problems
from cot_transfer.experiment.runner import ExperimentSettings, resume_inputs

SAMPLES = Path(__file__).resolve().parents[2] / "datasets" / "formats"


def run_args(*extra: str) -> list[str]:
    return ["run", "--address", "127.0.0.1:1", "--out", "unused", *extra]


@pytest.mark.parametrize(
    ("sample", "first_id"),
    [
        ("math500.jsonl", "test/prealgebra/ct-101.json"),
        ("aime.jsonl", "ct-2024-I-1"),
        ("gsm8k.jsonl", "1"),
        ("math500.parquet", "test/prealgebra/ct-101.json"),
        ("math500-saved", "test/prealgebra/ct-101.json"),
    ],
)
def test_run_reads_native_datasets_with_their_own_ids(sample: str, first_id: str) -> None:
    args = build_parser().parse_args(run_args("--problems", str(SAMPLES / sample), "--limit", "2"))
    problems, settings, path = inputs_from_args(args, None)
    assert problems[0].id == first_id and len(problems) == 2
    assert path == (SAMPLES / sample).resolve()
    assert isinstance(settings, ExperimentSettings)


def test_run_takes_the_format_and_field_flags() -> None:
    args = build_parser().parse_args(
        run_args(
            "--problems",
            str(SAMPLES / "olympiadbench.jsonl"),
            "--format",
            "olympiad",
            "--id-field",
            "id",
            "--group-by",
            "subfield,answer_type",
        )
    )
    problems, _, _ = inputs_from_args(args, None)
    assert [problem.id for problem in problems] == ["3001", "3002", "3003"]
    assert args.group_by == ("subfield", "answer_type")


def test_an_unknown_format_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(run_args("--problems", "x.jsonl", "--format", "squad"))
    assert "invalid choice: 'squad'" in capsys.readouterr().err


def test_a_malformed_record_stops_run_before_any_call(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"unique_id": "a", "problem": "q", "answer": "1"}\n{"problem": "r"}\n', encoding="utf-8")
    assert main(run_args("--problems", str(path))) == 2
    assert f"{path}:2: missing field" in capsys.readouterr().err


def test_resume_refuses_dataset_flags(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["run", "--address", "127.0.0.1:1", "--resume", str(tmp_path), "--format", "gsm8k"]
    )
    with pytest.raises(UsageError, match="drop --format"):
        inputs_from_args(args, None)


def test_resume_reads_the_problems_the_folder_keeps(tmp_path: Path) -> None:
    source = tmp_path / "mapped.jsonl"
    source.write_text(json.dumps({"idx": "q1", "text": "2+2?", "target": "4", "level": 3}) + "\n", encoding="utf-8")
    problems = load_problems(source, DatasetOptions(id_field="idx", problem_field="text", answer_field="target"))
    folder = tmp_path / "run"
    folder.mkdir()
    settings = ExperimentSettings(fractions=(0.5,), n=2)
    run = {**settings.to_json(), "problems_path": str(source), "problem_ids": ["q1"], "settings_hash": "h"}
    (folder / "run.json").write_text(json.dumps(run), encoding="utf-8")
    save_run_problems(folder, problems)
    source.unlink()  # the run needs its source no more
    resumed, resumed_settings, path = resume_inputs(folder)
    assert resumed == problems and resumed[0].metadata == {"level": 3}
    assert resumed_settings.to_json() == settings.to_json()
    assert path == source
    assert (folder / RUN_PROBLEMS_FILE).is_file()
