"""The benchmark's serving-config preparation and the naive baseline's pure helpers."""

from pathlib import Path

import pytest
import yaml

from benchmarks.naive import spread_subset, weak_budget
from benchmarks.stack import apply_override, prepare_config
from benchmarks.workload import QUICK, STANDARD

REPO = Path(__file__).resolve().parents[2]


def test_apply_override_sets_dotted_keys_with_yaml_values() -> None:
    data: dict[str, object] = {"weak": {"engine": {"model": "m"}}}
    apply_override(data, "weak.engine.max_num_seqs=256")
    apply_override(data, "weak.engine.engine_kwargs.block_size=32")
    apply_override(data, "ingress.max_concurrent_completions=64")
    assert data == {
        "weak": {"engine": {"model": "m", "max_num_seqs": 256, "engine_kwargs": {"block_size": 32}}},
        "ingress": {"max_concurrent_completions": 64},
    }


def test_apply_override_rejects_an_assignment_without_a_value() -> None:
    with pytest.raises(SystemExit):
        apply_override({}, "weak.engine.max_num_seqs")


def test_prepare_config_uses_free_ports_and_absolute_models(tmp_path: Path) -> None:
    for role in ("strong", "weak"):
        (tmp_path / "models" / role).mkdir(parents=True)
        (tmp_path / "models" / role / "config.json").write_text("{}")
    source = yaml.safe_load((REPO / "configs" / "local-cpu.yaml").read_text())
    source["strong"]["engine"]["model"] = "models/strong"
    source["weak"]["engine"]["model"] = "models/weak"
    (tmp_path / "serving.src.yaml").write_text(yaml.safe_dump(source))
    out = tmp_path / "out"
    out.mkdir()
    path, config = prepare_config(tmp_path / "serving.src.yaml", out, ["weak.engine.max_num_seqs=64"])
    assert path.parent == out
    assert {config.grpc_port, config.http_port, config.metrics_port}.isdisjoint({9000, 8000, 8080})
    assert config.weak.engine.model == str((tmp_path / "models" / "weak").resolve())
    assert config.weak.engine.max_num_seqs == 64


def test_prepare_config_stops_when_a_model_is_missing(tmp_path: Path) -> None:
    source = yaml.safe_load((REPO / "configs" / "local-cpu.yaml").read_text())
    source["strong"]["engine"]["model"] = str(tmp_path / "nowhere")
    (tmp_path / "serving.yaml").write_text(yaml.safe_dump(source))
    with pytest.raises(SystemExit, match="strong model"):
        prepare_config(tmp_path / "serving.yaml", tmp_path)


def test_the_standard_workload_is_32_problems_by_11_fractions_by_16_samples() -> None:
    assert (STANDARD.num_problems, len(STANDARD.fractions), STANDARD.n) == (32, 11, 16)
    assert STANDARD.fractions[0] == 0.0 and STANDARD.fractions[-1] == 1.0 and 0.3 in STANDARD.fractions
    assert QUICK.num_problems * len(QUICK.fractions) * QUICK.n < 100


def test_weak_budget_counts_the_prefix_and_leaves_one_token() -> None:
    assert weak_budget(0, 256) == 256
    assert weak_budget(100, 256) == 156
    assert weak_budget(300, 256) == 1


def test_spread_subset_takes_items_evenly_with_both_ends() -> None:
    items = list(range(32))
    assert spread_subset(items, 4) == [0, 10, 21, 31]
    assert spread_subset(items, 1) == [16]
    assert spread_subset(items, 40) == items
    assert spread_subset(items, 0) == []
