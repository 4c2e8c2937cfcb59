"""The problem-affinity router, without a Ray cluster: the owner choice, the load fallback, and the
router inside Serve's own routing loop with fake replicas (concurrent calls of one incoming request)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import pytest
from ray.serve._private.common import DeploymentHandleSource, DeploymentID, ReplicaID, RequestMetadata
from ray.serve._private.request_router.request_router import LocalityMixin, MultiplexMixin, RequestRouter
from ray.serve.request_router import PendingRequest

from cot_transfer.domain.requests import CompletionRequest, PrefixRequest
from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.serving.common.serving_config import ModelDeploymentConfig
from cot_transfer.serving.wiring.routing import (
    ROUTER_CLASS_PATH,
    ProblemAffinityRouter,
    is_imbalanced,
    owner_of,
    problem_key,
    request_problem,
    request_router_config,
)

NAMES = ["replica-a", "replica-b", "replica-c"]
DEPLOYMENT = DeploymentID(name="WeakModel", app_name="cot_transfer")
SAMPLING = SamplingParams(0.6, 0.95, 16)


def owner(problem: str, names: list[str] = NAMES) -> str:
    chosen = owner_of(problem_key(problem), names)
    assert chosen is not None
    return chosen


def test_every_call_about_a_problem_picks_the_same_owner() -> None:
    assert len({owner("What is 2+3?") for _ in range(20)}) == 1
    # The order replicas are listed in does not matter: every ingress replica agrees.
    assert owner("What is 2+3?", list(reversed(NAMES))) == owner("What is 2+3?")
    assert owner_of(problem_key("x"), []) is None


def test_problems_spread_over_the_replicas() -> None:
    counts = Counter(owner(f"problem {index}") for index in range(3000))
    # Rendezvous hashing is uniform: each share within 3000/3 +- 10%.
    assert set(counts) == set(NAMES) and all(900 <= count <= 1100 for count in counts.values()), counts


def test_a_replica_leaving_moves_only_its_own_problems() -> None:
    problems = [f"problem {index}" for index in range(500)]
    before = {problem: owner(problem) for problem in problems}
    after = {problem: owner(problem, ["replica-a", "replica-b"]) for problem in problems}
    moved = [problem for problem in problems if before[problem] != after[problem]]
    assert moved and all(before[problem] == "replica-c" for problem in moved)


def test_imbalance_is_the_owner_past_the_shortest_queue_by_more_than_the_threshold() -> None:
    assert not is_imbalanced("a", {"a": 4, "b": 0}, threshold=4)
    assert is_imbalanced("a", {"a": 5, "b": 0}, threshold=4)
    # Measured against the shortest queue, not the other replicas' mean.
    assert is_imbalanced("a", {"a": 9, "b": 9, "c": 1}, threshold=4)
    # A replica without a fresh cached length counts as idle.
    assert is_imbalanced("a", {"a": 5, "b": None}, threshold=4)
    assert not is_imbalanced("a", {"a": None, "b": 3}, threshold=4)


def test_the_problem_is_read_from_either_model_call() -> None:
    completion = CompletionRequest("2+3", "prefix", 4, SAMPLING, "5", "exact")
    assert request_problem([completion], {}) == "2+3"
    assert request_problem([], {"request": PrefixRequest("7*6", (0.5,), SAMPLING, "exact")}) == "7*6"
    assert request_problem(["not a request"], {}) is None


class FakeReplica:
    """What Serve's routing loop reads of a ``RunningReplica``; the queue length is set by the test."""

    def __init__(self, name: str, queue_len: int = 0, max_ongoing_requests: int = 64) -> None:
        self.replica_id = ReplicaID(unique_id=name, deployment_id=DEPLOYMENT)
        self.node_id = f"node-{name}"
        self.availability_zone: str | None = None
        self.multiplexed_model_ids: set[str] = set()
        self.routing_stats: dict[str, Any] = {}
        self.max_ongoing_requests = max_ongoing_requests
        self.is_cross_language = False
        self.queue_len = queue_len

    async def get_queue_len(self, *, deadline_s: float) -> int:
        return self.queue_len


def make_router(cls: type[RequestRouter], replicas: list[FakeReplica], **state: Any) -> RequestRouter:
    router = cls(
        deployment_id=DEPLOYMENT,
        handle_source=DeploymentHandleSource.REPLICA,
        use_replica_queue_len_cache=True,
        self_node_id="node-ingress",
    )
    router.initialize_state(**state)
    router.update_replicas(replicas)  # type: ignore[arg-type]
    return router


def pending(problem: str | None, internal_request_id: str | None = None) -> PendingRequest:
    args: list[Any] = [] if problem is None else [CompletionRequest(problem, "prefix", 4, SAMPLING, "5", "exact")]
    metadata = RequestMetadata(
        request_id=str(uuid.uuid4()), internal_request_id=internal_request_id or str(uuid.uuid4())
    )
    return PendingRequest(args=args, kwargs={}, metadata=metadata)


async def settle(router: RequestRouter) -> None:
    """Lets the probe that ``update_replicas`` starts fill the queue-length cache."""
    for _ in range(5):
        await asyncio.sleep(0)
    for replica in router.curr_replicas.values():
        assert router.replica_queue_len_cache.get(replica.replica_id) is not None


def names(ranks: list[list[Any]]) -> list[list[str]]:
    return [[replica.replica_id.unique_id for replica in rank] for rank in ranks]


async def test_the_owner_is_ranked_alone_before_serves_own_pair() -> None:
    replicas = [FakeReplica(name) for name in NAMES]
    router = make_router(ProblemAffinityRouter, replicas, imbalance_threshold=4)
    await settle(router)
    ranks = names(await router.choose_replicas(router._replicas_list, pending("What is 2+3?")))
    assert ranks[0] == [owner("What is 2+3?")]
    # Then the power-of-two pair, as Serve's default router would have chosen it.
    assert len(ranks) == 2 and len(ranks[1]) == 2 and set(ranks[1]) <= set(NAMES)


async def test_an_overloaded_owner_leaves_the_call_to_serves_choice() -> None:
    problem = "What is 2+3?"
    home = owner(problem)
    replicas = [FakeReplica(name, queue_len=5 if name == home else 0) for name in NAMES]
    router = make_router(ProblemAffinityRouter, replicas, imbalance_threshold=4)
    await settle(router)
    ranks = names(await router.choose_replicas(router._replicas_list, pending(problem)))
    assert len(ranks) == 1 and len(ranks[0]) == 2
    # Through Serve's routing loop: the pair's shorter queue, which is never the loaded owner.
    for _ in range(10):
        chosen = await asyncio.wait_for(router._choose_replica_for_request(pending(problem)), timeout=5)
        assert chosen.replica_id.unique_id != home
    # At the threshold exactly, affinity still holds.
    router.replica_queue_len_cache.update(ReplicaID(home, DEPLOYMENT), 4)
    ranks = names(await router.choose_replicas(router._replicas_list, pending(problem)))
    assert ranks[0] == [home]


async def test_a_call_without_a_problem_gets_serves_choice() -> None:
    router = make_router(ProblemAffinityRouter, [FakeReplica(name) for name in NAMES])
    await settle(router)
    ranks = names(await router.choose_replicas(router._replicas_list, pending(None)))
    assert len(ranks) == 1 and len(ranks[0]) == 2


async def test_a_full_owner_spills_to_the_other_replica() -> None:
    problem = "What is 2+3?"
    home = owner(problem, NAMES[:2])
    replicas = [FakeReplica(name, queue_len=2 if name == home else 0, max_ongoing_requests=2) for name in NAMES[:2]]
    # A threshold the queues never pass: only Serve's own capacity check moves the call.
    router = make_router(ProblemAffinityRouter, replicas, imbalance_threshold=100)
    await settle(router)
    chosen = await asyncio.wait_for(router._choose_replica_for_request(pending(problem)), timeout=5)
    assert chosen.replica_id.unique_id != home


class AffinityOnBareRouter(LocalityMixin, MultiplexMixin, RequestRouter):
    """The first attempt's shape (commit 9442b48): the same ranking on the bare ``RequestRouter``
    (no ``FIFOMixin``), as Ray Serve LLM's ``PrefixCacheAffinityRouter`` is built."""

    async def choose_replicas(self, candidate_replicas: Any, pending_request: Any = None) -> Any:
        assert pending_request is not None
        pending_request.routing_context.should_backoff = True
        by_name = {replica.replica_id.unique_id: replica for replica in candidate_replicas}
        home = owner_of(problem_key(request_problem(pending_request.args, {}) or ""), list(by_name))
        return [[by_name[home]]] if home else []


def concurrent_calls_of_one_request(problems: int, calls_per_problem: int) -> list[PendingRequest]:
    # Every handle call a replica makes while it serves one request inherits that request's
    # internal_request_id: the ingress's weak calls for one Transfer.Run all share it.
    shared = str(uuid.uuid4())
    return [pending(f"problem {index}", shared) for _ in range(calls_per_problem) for index in range(problems)]


async def test_concurrent_calls_of_one_request_all_get_their_owner() -> None:
    replicas = [FakeReplica(name) for name in NAMES[:2]]
    router = make_router(ProblemAffinityRouter, replicas, imbalance_threshold=16)
    await settle(router)
    requests = concurrent_calls_of_one_request(problems=8, calls_per_problem=6)
    chosen = await asyncio.wait_for(
        asyncio.gather(*(router._choose_replica_for_request(request) for request in requests)), timeout=10
    )
    per_problem: dict[str, set[str]] = {}
    for request, replica in zip(requests, chosen, strict=True):
        per_problem.setdefault(request.args[0].problem, set()).add(replica.replica_id.unique_id)
    assert per_problem == {problem: {owner(problem, NAMES[:2])} for problem in per_problem}
    # Both replicas own some of the eight problems.
    assert len(set().union(*per_problem.values())) == 2


async def test_the_first_attempts_shape_stalls_on_the_same_calls() -> None:
    """Why the router subclasses Serve's default one: on the bare RequestRouter a routed replica goes
    only to the pending request with the same internal_request_id, and Serve indexes one pending
    request per id, so the other concurrent calls of one incoming request are never fulfilled."""
    router = make_router(AffinityOnBareRouter, [FakeReplica(name) for name in NAMES[:2]])
    await settle(router)
    tasks = [
        asyncio.ensure_future(router._choose_replica_for_request(request))
        for request in concurrent_calls_of_one_request(problems=4, calls_per_problem=2)
    ]
    done, stuck = await asyncio.wait(tasks, timeout=3)
    for task in stuck:
        task.cancel()
    await asyncio.gather(*stuck, return_exceptions=True)
    assert stuck, "Serve fulfilled every call: the bare RequestRouter no longer stalls them"
    assert len(done) < len(tasks)
    # Cancelled, the stuck calls release their routing tasks (after at most one backoff, 0.5 s):
    # nothing keeps spinning on the test session's event loop.
    for _ in range(20):
        if router.curr_num_routing_tasks == 0:
            break
        await asyncio.sleep(0.1)
    assert router.curr_num_routing_tasks == 0


def test_the_router_is_set_through_serves_own_option() -> None:
    from ray.serve.config import RequestRouterConfig

    from cot_transfer.serving.wiring.deployments import _model_deployment_options

    engine = {"served_name": "weak", "model": "/models/weak"}
    deployment = ModelDeploymentConfig.model_validate(
        {"engine": engine, "deployment_config": {"request_router_config": request_router_config(8)}}
    )
    options = _model_deployment_options("WeakModel", deployment)
    # What Serve turns the option into.
    config = RequestRouterConfig.model_validate(options["request_router_config"])
    assert config.request_router_class == ROUTER_CLASS_PATH
    assert config.request_router_kwargs == {"imbalance_threshold": 8}
    plain = ModelDeploymentConfig.model_validate({"engine": engine})
    assert "request_router_config" not in _model_deployment_options("WeakModel", plain)


def test_a_negative_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match="imbalance_threshold"):
        make_router(ProblemAffinityRouter, [FakeReplica("a")], imbalance_threshold=-1)
