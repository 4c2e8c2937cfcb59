"""Adaptive sampling from the command line to the wire and back: the plan, its checks, the rows'
rounds and stop reasons, the run folder's settings, the report, and `cot-transfer plan`."""

from __future__ import annotations

from pathlib import Path

import pytest

from cot_transfer.cli.main import build_parser, main
from cot_transfer.cli.plan import adaptive_cost_under_prior, brute_force_cost
from cot_transfer.cli.run import UsageError, inputs_from_args
from cot_transfer.client.convert import sampling_plan_to_proto, transfer_event_from_proto
from cot_transfer.domain.errors import InvalidArgumentError
from cot_transfer.domain.requests import FractionResult
from cot_transfer.domain.sequential import DEFAULT_ROUNDS, SamplingPlan, StoppingRule
from cot_transfer.domain.transfer import RunSummary, Thresholds
from cot_transfer.experiment.markdown import markdown_table
from cot_transfer.experiment.runner import ExperimentSettings
from cot_transfer.experiment.sampling_summary import sampling_line, sampling_summary
from cot_transfer.serving.common.serving_config import ServingConfig
from cot_transfer.serving.edge import decode, encode
from cot_transfer.v1 import cot_transfer_pb2 as pb

CONFIG = ServingConfig.from_yaml(Path(__file__).resolve().parents[2] / "configs" / "local-cpu.yaml")
SAMPLES = Path(__file__).resolve().parents[2] / "datasets" / "formats"


def run_request(plan: pb.SamplingPlan | None, n: int = 0) -> pb.RunRequest:
    message = pb.RunRequest(problems=[pb.Problem(id="a", problem="1+2", answer="3")], fractions=[0.5, 1.0], n=n)
    if plan is not None:
        message.sampling_plan.CopyFrom(plan)
    return message


def test_the_plan_decodes_with_the_services_defaults_and_n_is_n_max() -> None:
    request = decode.transfer_request_from_proto(run_request(pb.SamplingPlan(n_max=128)), CONFIG)
    assert request.n == 128
    assert request.sampling_plan == SamplingPlan(128, tuple(CONFIG.adaptive.rounds), CONFIG.adaptive.error_rate)
    sent = SamplingPlan(64, (4, 4, 8), error_rate=0.01, target_width=0.2)
    decoded = decode.transfer_request_from_proto(run_request(sampling_plan_to_proto(sent), n=64), CONFIG)
    assert decoded.sampling_plan == sent
    # The stopping rule travels by name (a resumed folder of the mixture rule keeps it).
    old_rule = SamplingPlan(64, rule="mixture_cs")
    decoded = decode.transfer_request_from_proto(run_request(sampling_plan_to_proto(old_rule), n=64), CONFIG)
    assert decoded.sampling_plan is not None and decoded.sampling_plan.rule == "mixture_cs"
    assert decode.transfer_request_from_proto(run_request(None, n=4), CONFIG).sampling_plan is None


@pytest.mark.parametrize(
    ("plan", "n", "field"),
    [
        (pb.SamplingPlan(n_max=0), 0, "sampling_plan.n_max"),
        (pb.SamplingPlan(n_max=10**6), 0, "sampling_plan.n_max"),
        (pb.SamplingPlan(n_max=64, rounds=[8, -1]), 0, "sampling_plan.rounds[1]"),
        (pb.SamplingPlan(n_max=64, error_rate=1.5), 0, "sampling_plan.error_rate"),
        (pb.SamplingPlan(n_max=64, target_width=0.0), 0, "sampling_plan.target_width"),
        (pb.SamplingPlan(n_max=64), 32, "n"),
        (pb.SamplingPlan(n_max=64, rule="sprt"), 0, "sampling_plan.rule"),
        (pb.SamplingPlan(n_max=4096, rounds=[4096]), 0, "sampling_plan.rounds[0]"),
    ],
)
def test_a_bad_plan_is_invalid_argument_naming_the_field(plan: pb.SamplingPlan, n: int, field: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        decode.transfer_request_from_proto(run_request(plan, n), CONFIG)
    assert caught.value.field == field


def test_rounds_and_samples_round_trip_the_wire() -> None:
    row = FractionResult("a", 0.5, 3, 6, 16, 9, rounds=2, stop_reason="decided", rao_blackwell_potential=0.6)
    assert transfer_event_from_proto(encode.transfer_event_to_proto(row)) == row
    # The wire's potential is the row's estimate; the raw counts travel beside it.
    assert encode.transfer_event_to_proto(row).result.potential == 0.6
    summary = RunSummary((0.0,), 128, 1, 1, (), None, Thresholds(), samples_drawn=40, samples_brute_force=128)
    decoded = transfer_event_from_proto(encode.transfer_event_to_proto(summary))
    assert isinstance(decoded, RunSummary)
    assert (decoded.samples_drawn, decoded.samples_brute_force) == (40, 128)


def run_args(*extra: str) -> list[str]:
    return ["run", "--address", "127.0.0.1:1", "--out", "unused", "--problems", str(SAMPLES / "gsm8k.jsonl"), *extra]


def test_adaptive_flags_make_the_plan_of_the_run_settings() -> None:
    args = build_parser().parse_args(run_args("--n", "128", "--adaptive", "--error-rate", "0.01", "--rounds", "8,24"))
    _, settings, _ = inputs_from_args(args, None)
    assert settings.sampling_plan == SamplingPlan(128, (8, 24), error_rate=0.01)
    stored = settings.to_json()
    assert stored["sampling_plan"]["n_max"] == 128
    assert ExperimentSettings.from_json(stored) == settings
    brute = inputs_from_args(build_parser().parse_args(run_args("--n", "128")), None)[1]
    # A brute-force run keeps the settings (and their hash) it always had.
    assert "sampling_plan" not in brute.to_json() and brute.sampling_plan is None
    # The stopping rule is a setting: bonferroni_cp by default, the old rule by name.
    assert stored["sampling_plan"]["rule"] == "bonferroni_cp"
    old = build_parser().parse_args(run_args("--n", "128", "--adaptive", "--stopping-rule", "mixture_cs"))
    old_settings = inputs_from_args(old, None)[1]
    assert old_settings.sampling_plan is not None and old_settings.sampling_plan.rule == "mixture_cs"
    assert ExperimentSettings.from_json(old_settings.to_json()) == old_settings
    with pytest.raises(UsageError, match="--stopping-rule needs --adaptive"):
        inputs_from_args(build_parser().parse_args(run_args("--stopping-rule", "mixture_cs")), None)


def test_plan_options_need_adaptive_and_resume_refuses_them(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--error-rate needs --adaptive"):
        inputs_from_args(build_parser().parse_args(run_args("--error-rate", "0.1")), None)
    args = build_parser().parse_args(["run", "--address", "127.0.0.1:1", "--resume", str(tmp_path), "--adaptive"])
    with pytest.raises(UsageError, match="drop --adaptive"):
        inputs_from_args(args, None)


def test_summary_and_report_show_samples_drawn_against_brute_force() -> None:
    settings = ExperimentSettings((0.0, 1.0), 64, sampling_plan=SamplingPlan(64)).to_json()
    rows = [
        FractionResult("a", 0.0, 0, 6, 64, 0, rounds=5, stop_reason="n_max"),
        FractionResult("a", 1.0, 6, 6, 8, 8, rounds=1, stop_reason="decided"),
    ]
    sampling = sampling_summary(settings, rows)
    assert (sampling["samples_drawn"], sampling["samples_brute_force"]) == (72, 128)
    assert sampling["sample_ratio"] == pytest.approx(72 / 128)
    assert sampling["stop_reasons"] == {"n_max": 1, "decided": 1}
    line = sampling_line({"sampling": sampling})
    assert line is not None and line.startswith("72 of 128 brute force (56.2%)")
    assert (sampling["rule"], sampling["potential_estimate"]) == ("bonferroni_cp", "rao_blackwell")
    assert "rule bonferroni_cp" in line and "Rao-Blackwell" in line
    assert "| samples drawn |" in "\n".join(markdown_table(["setting", "value"], [["samples drawn", line]]))
    assert sampling_line({"sampling": sampling_summary(ExperimentSettings((0.0,), 8).to_json(), rows)}) is None


def test_plan_costs_brute_force_and_adaptive(capsys: pytest.CaptureFixture[str]) -> None:
    fractions = tuple(round(0.1 * step, 1) for step in range(11))
    brute = brute_force_cost(500, fractions, 128, 4000, 0)
    assert brute.samples == 500 * 11 * 128
    assert brute.weak_tokens == pytest.approx(500 * 128 * 4000 * 5.5)
    rule = StoppingRule(SamplingPlan(128, DEFAULT_ROUNDS), Thresholds())
    adaptive = adaptive_cost_under_prior(rule, 500, fractions, (0.3, 0.3), 4000, 0)
    assert 0.05 < adaptive.samples / brute.samples < 0.25
    assert adaptive.wall_s(1000, 10_000) < brute.wall_s(1000, 10_000)
    code = main(
        ["plan", "--num-problems", "500", "--n", "128", "--adaptive", "--cot-tokens", "4000", "--tokens-per-s", "1e4"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "| brute force (n = 128) | 704.00k |" in out
    assert "adaptive (n_max = 128)" in out and "Beta(0.3, 0.3)" in out


def test_plan_needs_a_throughput(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--num-problems", "5", "--cot-tokens", "100"]) == 2
    assert "--tokens-per-s" in capsys.readouterr().err
