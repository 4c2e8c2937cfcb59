from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from cot_transfer.serving.common.serving_config import ServingConfig

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda path: path.name)
def test_shipped_configs_validate(path: Path) -> None:
    ServingConfig.from_yaml(path)


def test_local_config_points_at_the_shipped_models() -> None:
    config = ServingConfig.from_yaml(REPO / "configs" / "local-cpu.yaml")
    for deployment in (config.strong, config.weak):
        model = Path(deployment.engine.model)
        assert model.is_absolute() and (model / "config.json").is_file()
        assert deployment.resources.num_gpus == 0


def test_unknown_keys_are_rejected(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "configs" / "local-cpu.yaml").read_text())
    data["strong"]["engine"]["max_modl_len"] = 128
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ValidationError, match="max_modl_len"):
        ServingConfig.from_yaml(path)


def test_autoscaling_bounds_must_be_ordered(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "configs" / "local-cpu.yaml").read_text())
    data["weak"]["autoscaling"] = {"min_replicas": 3, "max_replicas": 2}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ValidationError, match="min_replicas"):
        ServingConfig.from_yaml(path)


def test_yaml_round_trip_is_lossless() -> None:
    config = ServingConfig.from_yaml(REPO / "configs" / "local-cpu.yaml")
    assert ServingConfig.model_validate(yaml.safe_load(config.to_yaml())) == config


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda path: path.name)
def test_shipped_configs_bound_every_queue(path: Path) -> None:
    """Past a full queue Serve sheds the call with RESOURCE_EXHAUSTED (the client backs off and
    retries); an unbounded queue (-1) lets one caller pile up work no deadline can see."""
    config = ServingConfig.from_yaml(path)
    models = {"strong": config.strong, "weak": config.weak}
    models |= {f"receivers[{index}]": model for index, model in enumerate(config.receivers)}
    queues = {name: model.serve_options()["max_queued_requests"] for name, model in models.items()}
    queues["ingress"] = config.ingress.serve_options()["max_queued_requests"]
    assert all(queued >= 1 for queued in queues.values()), queues
