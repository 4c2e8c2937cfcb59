"""Problem-affinity request routing: every call about one problem goes to the same model replica.

A weak replica's prefix cache holds the KV blocks of the prompts it has computed. All of a
problem's prompts (every fraction's prefix, every round of samples) start with the same rendered
problem and share the leading blocks of the CoT, so they reuse each other's blocks only on one
replica. Serve's default power-of-two routing scatters them across replicas; this router sends
them to the problem's *owner* instead.

The owner is chosen by rendezvous (highest-random-weight) hashing of the problem text over the
running replicas: every router (each ingress replica has its own) picks the same owner with no
shared state, and a replica that joins or leaves moves only the problems it wins or held. The key
is the problem itself, known exactly, where Ray Serve LLM's ``PrefixCacheAffinityRouter`` matches
prompt text in a prefix tree kept in a separate actor.

Affinity yields to load: when the owner has ``imbalance_threshold`` more requests in flight than
the least loaded replica, the request goes to the least loaded ones (Serve's own choice among
them, by probed queue length). A request without a problem is routed by load alone.

The choice itself (``rank_replicas``) is pure, so it is tested without Ray.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar

from ray.serve.request_router import PendingRequest, RequestRouter, RunningReplica

ROUTER_CLASS_PATH = "cot_transfer.serving.routing:ProblemAffinityRouter"
DEFAULT_IMBALANCE_THRESHOLD = 16

ReplicaKey = TypeVar("ReplicaKey", bound=Hashable)


def problem_key(problem: str) -> bytes:
    """The routing key of a problem: a digest of its text, so long problems hash once, cheaply."""
    return hashlib.blake2b(problem.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def affinity_score(key: bytes, replica: str) -> int:
    """Rendezvous weight of ``replica`` for ``key``; the owner is the replica with the highest."""
    digest = hashlib.blake2b(replica.encode(), digest_size=8, key=key).digest()
    return int.from_bytes(digest, "big")


def rank_replicas(
    key: bytes | None,
    replicas: Sequence[ReplicaKey],
    queue_lengths: Mapping[ReplicaKey, int | None],
    imbalance_threshold: int,
    name: Callable[[ReplicaKey], str] = str,
) -> list[list[ReplicaKey]]:
    """Replicas in ranks, the most preferred first (``RequestRouter.choose_replicas``'s shape).

    ``queue_lengths``: requests in flight per replica as last seen; a replica not seen yet
    counts as idle. ``name`` gives the stable name a replica is hashed under.
    """
    if not replicas:
        return []
    loads = {replica: queue_lengths.get(replica) or 0 for replica in replicas}
    by_load = sorted(replicas, key=lambda replica: loads[replica])
    if key is None:
        return [by_load]
    owner = max(replicas, key=lambda replica: affinity_score(key, name(replica)))
    if loads[owner] - loads[by_load[0]] > imbalance_threshold:
        # Imbalanced: the least loaded replicas first, the owner last.
        lightest = [replica for replica in by_load if loads[replica] == loads[by_load[0]]]
        rest = [replica for replica in by_load if loads[replica] != loads[by_load[0]]]
        return [lightest, rest] if rest else [lightest]
    others = [replica for replica in by_load if replica != owner]
    # The owner alone first; if its queue is full Serve moves on to the next rank.
    return [[owner], others] if others else [[owner]]


def request_problem(args: Sequence[Any], kwargs: Mapping[str, Any]) -> str | None:
    """The problem text of a model call (``CompletionRequest`` or ``PrefixRequest``), if any."""
    for value in (*args, *kwargs.values()):
        problem = getattr(value, "problem", None)
        if isinstance(problem, str):
            return problem
    return None


class ProblemAffinityRouter(RequestRouter):
    """Serve request router: a problem's calls go to its rendezvous-hash owner unless it is overloaded."""

    def initialize_state(self, imbalance_threshold: int = DEFAULT_IMBALANCE_THRESHOLD, **kwargs: Any) -> None:
        if imbalance_threshold < 0:
            raise ValueError(f"imbalance_threshold must be >= 0, got {imbalance_threshold}")
        self._imbalance_threshold = imbalance_threshold

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        if pending_request is not None:
            # Every replica is in the ranks returned: once Serve has tried them all, it must back
            # off before asking again (its retry loop spins without a pause otherwise, starving
            # the replicas whose queue-length probes it is waiting for).
            pending_request.routing_context.should_backoff = True
        problem = None if pending_request is None else request_problem(pending_request.args, pending_request.kwargs)
        key = None if problem is None else problem_key(problem)
        cache = self.replica_queue_len_cache
        queue_lengths = {replica: cache.get(replica.replica_id) for replica in candidate_replicas}
        return rank_replicas(
            key,
            candidate_replicas,
            queue_lengths,
            self._imbalance_threshold,
            name=lambda replica: replica.replica_id.unique_id,
        )
