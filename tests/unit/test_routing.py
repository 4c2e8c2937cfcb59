"""The problem-affinity router's choice, without Ray: owner stability, spread, and the load fallback."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest

from cot_transfer.domain.requests import CompletionRequest, PrefixRequest
from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.serving.config import ModelDeploymentConfig
from cot_transfer.serving.routing import ROUTER_CLASS_PATH, problem_key, rank_replicas, request_problem

REPLICAS = ["replica-a", "replica-b", "replica-c"]
IDLE: dict[str, int | None] = {}


def owner(problem: str, replicas: list[str] = REPLICAS, loads: dict[str, int | None] = IDLE) -> str:
    ranks = rank_replicas(problem_key(problem), replicas, loads, imbalance_threshold=4)
    assert len(ranks[0]) == 1
    return ranks[0][0]


def test_every_call_about_a_problem_picks_the_same_replica() -> None:
    assert len({owner("What is 2+3?") for _ in range(20)}) == 1
    # The order replicas are listed in does not matter: every ingress replica agrees.
    assert owner("What is 2+3?", list(reversed(REPLICAS))) == owner("What is 2+3?")


def test_problems_spread_over_the_replicas() -> None:
    counts = Counter(owner(f"problem {index}") for index in range(3000))
    assert set(counts) == set(REPLICAS)
    # Rendezvous hashing is uniform: each share within 3000/3 +- 10%.
    assert all(900 <= count <= 1100 for count in counts.values()), counts


def test_a_replica_leaving_moves_only_its_own_problems() -> None:
    problems = [f"problem {index}" for index in range(500)]
    before = {problem: owner(problem) for problem in problems}
    after = {problem: owner(problem, ["replica-a", "replica-b"]) for problem in problems}
    moved = [problem for problem in problems if before[problem] != after[problem]]
    assert moved and all(before[problem] == "replica-c" for problem in moved)


def test_the_owner_comes_first_and_the_others_by_load() -> None:
    problem = "What is 2+3?"
    home = owner(problem)
    others = [replica for replica in REPLICAS if replica != home]
    loads: dict[str, int | None] = {home: 3, others[0]: 2, others[1]: 0}
    ranks = rank_replicas(problem_key(problem), REPLICAS, loads, imbalance_threshold=4)
    assert ranks == [[home], [others[1], others[0]]]


def test_an_overloaded_owner_yields_to_the_least_loaded_replicas() -> None:
    problem = "What is 2+3?"
    home = owner(problem)
    others = [replica for replica in REPLICAS if replica != home]
    loads: dict[str, int | None] = {home: 5, others[0]: 0, others[1]: 0}
    ranks = rank_replicas(problem_key(problem), REPLICAS, loads, imbalance_threshold=4)
    assert sorted(ranks[0]) == sorted(others)
    assert ranks[1] == [home]
    # At the threshold exactly, affinity still holds.
    loads[home] = 4
    assert rank_replicas(problem_key(problem), REPLICAS, loads, imbalance_threshold=4)[0] == [home]


def test_unseen_replicas_count_as_idle() -> None:
    problem = "What is 2+3?"
    home = owner(problem)
    loads: dict[str, int | None] = {home: 9}
    ranks = rank_replicas(problem_key(problem), REPLICAS, loads, imbalance_threshold=4)
    assert home not in ranks[0]


def test_a_request_without_a_problem_is_routed_by_load() -> None:
    loads: dict[str, int | None] = {"replica-a": 2, "replica-b": 1, "replica-c": None}
    assert rank_replicas(None, REPLICAS, loads, imbalance_threshold=4) == [["replica-c", "replica-b", "replica-a"]]
    assert rank_replicas(problem_key("x"), [], loads, imbalance_threshold=4) == []


@dataclass(frozen=True)
class Replica:
    unique_id: str


def test_replicas_are_hashed_under_their_stable_name() -> None:
    replicas = [Replica(name) for name in REPLICAS]
    ranks = rank_replicas(problem_key("p"), replicas, {}, 4, name=lambda replica: replica.unique_id)
    assert ranks[0][0].unique_id == owner("p")


def test_the_problem_is_read_from_either_model_call() -> None:
    sampling = SamplingParams(0.6, 0.95, 16)
    completion = CompletionRequest("2+3", "prefix", 4, sampling, "5", "exact")
    assert request_problem([completion], {}) == "2+3"
    assert request_problem([], {"request": PrefixRequest("7*6", (0.5,), sampling, "exact")}) == "7*6"
    assert request_problem(["not a request"], {}) is None


def test_the_router_is_chosen_per_model_deployment() -> None:
    from cot_transfer.serving.deployments import _model_deployment_options

    engine = {"served_name": "weak", "model": "/models/weak"}
    affinity_config = ModelDeploymentConfig.model_validate({"engine": engine, "router": "prefix_affinity"})
    affinity = _model_deployment_options("WeakModel", affinity_config)
    from ray.serve.config import RequestRouterConfig

    # What Serve turns the option into.
    config = RequestRouterConfig.model_validate(affinity["request_router_config"])
    assert config.request_router_class == ROUTER_CLASS_PATH
    assert config.request_router_kwargs == {"imbalance_threshold": 16}
    default = ModelDeploymentConfig.model_validate({"engine": engine, "router": "default"})
    assert "request_router_config" not in _model_deployment_options("WeakModel", default)
    with pytest.raises(ValueError):
        ModelDeploymentConfig.model_validate({"engine": engine, "router": "round_robin"})
