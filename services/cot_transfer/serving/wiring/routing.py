"""Problem-affinity request routing: the calls about one problem prefer one model replica.

A weak replica's prefix cache holds the KV blocks of the prompts it has computed. All of a
problem's prompts (every fraction's prefix, every round of samples) start with the same rendered
problem and share the leading blocks of the CoT, so they reuse each other's blocks only on one
replica. Serve's default power-of-two routing scatters them across replicas.

``ProblemAffinityRouter`` is Serve's own ``PowerOfTwoChoicesRequestRouter`` with one method
changed, ``choose_replicas``: a call that carries a problem (``CompletionRequest.problem``, or a
``PrefixRequest``'s) ranks the problem's *owner* first, then Serve's own power-of-two pair. The
owner is the rendezvous (highest-random-weight) hash winner among the candidate replicas, so every
router (each ingress replica has its own) picks the same owner with no shared state, and a replica
that joins or leaves moves only the problems it wins or held. Where Ray Serve LLM's
``PrefixCacheAffinityRouter`` matches prompt text in a prefix tree kept in a separate actor (one
blocking ``ray.get`` per routing attempt), the key here is the problem itself, known exactly.

Affinity yields to load: when the owner's queue (Serve's cached queue length) is more than
``imbalance_threshold`` requests longer than the shortest one, the call gets Serve's power-of-two
choice alone. A full owner (``max_ongoing_requests``) is skipped by Serve itself, which then tries
the next rank.

Everything else is Serve's: the FIFO fulfilment of pending requests, locality and multiplexing,
backoff, queue-length probing. That matters. The first attempt (history, commit 9442b48) subclassed
the bare ``RequestRouter`` and stalled a concurrent ``Transfer.Run``: without ``FIFOMixin`` a routed
replica is handed only to the pending request with the same ``internal_request_id``, and every call
the ingress makes while serving one ``Transfer.Run`` inherits that request's id. Serve's index of
pending requests keeps one entry per id, so all but one of the concurrent weak calls were never
matched, and their routing tasks (at most two per replica) retried forever.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

# Where Serve itself loads its default router from (no public path exports the class).
from ray.serve._private.request_router import PowerOfTwoChoicesRequestRouter
from ray.serve.request_router import PendingRequest, RunningReplica

ROUTER_CLASS_PATH = "cot_transfer.serving.wiring.routing:ProblemAffinityRouter"
# In requests in flight. Well below a replica's max_ongoing_requests (64 in the CPU configs), so
# a hot problem spills over before its owner's queue is full, and well above the jitter of the
# cached queue lengths, so affinity holds in a balanced run.
DEFAULT_IMBALANCE_THRESHOLD = 16


def request_router_config(imbalance_threshold: int = DEFAULT_IMBALANCE_THRESHOLD) -> dict[str, Any]:
    """Serve's ``request_router_config`` deployment option for this router, as a serving config's
    ``deployment_config`` passes it through (e.g. ``weak.deployment_config.request_router_config``)."""
    return {
        "request_router_class": ROUTER_CLASS_PATH,
        "request_router_kwargs": {"imbalance_threshold": imbalance_threshold},
    }


def problem_key(problem: str) -> bytes:
    """The routing key of a problem: a digest of its text, so a long problem is hashed once per attempt, cheaply."""
    return hashlib.blake2b(problem.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def affinity_score(key: bytes, replica: str) -> int:
    """Rendezvous weight of ``replica`` for ``key``; the owner is the replica with the highest."""
    digest = hashlib.blake2b(replica.encode(), digest_size=8, key=key).digest()
    return int.from_bytes(digest, "big")


def owner_of(key: bytes, replicas: Sequence[str]) -> str | None:
    """The rendezvous owner of ``key`` among replica names (ties, at 2**-64, go to the smaller name)."""
    if not replicas:
        return None
    return max(replicas, key=lambda replica: (affinity_score(key, replica), replica))


def is_imbalanced(owner: str, queue_lengths: Mapping[str, int | None], threshold: int) -> bool:
    """Whether ``owner``'s queue is more than ``threshold`` longer than the shortest known one.

    A replica without a fresh cached length (None) counts as idle, as Serve's own choice does
    before it probes.
    """
    lengths = [length or 0 for length in queue_lengths.values()]
    if not lengths:
        return False
    return (queue_lengths.get(owner) or 0) - min(lengths) > threshold


def request_problem(args: Sequence[Any], kwargs: Mapping[str, Any]) -> str | None:
    """The problem text of a model call (``CompletionRequest`` or ``PrefixRequest``), if any."""
    for value in (*args, *kwargs.values()):
        problem = getattr(value, "problem", None)
        if isinstance(problem, str):
            return problem
    return None


class ProblemAffinityRouter(PowerOfTwoChoicesRequestRouter):
    """Serve's power-of-two router, with a problem's calls ranked to its rendezvous owner first."""

    def initialize_state(self, imbalance_threshold: int = DEFAULT_IMBALANCE_THRESHOLD, **kwargs: Any) -> None:
        super().initialize_state(**kwargs)
        if imbalance_threshold < 0:
            raise ValueError(f"imbalance_threshold must be >= 0, got {imbalance_threshold}")
        self._imbalance_threshold = imbalance_threshold

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        # Serve's choice first and always: it also sets the request's routing context (locality
        # attempts, multiplexing, whether to back off), which this method leaves as Serve set it.
        fallback: list[list[RunningReplica]] = await super().choose_replicas(candidate_replicas, pending_request)
        if not fallback or pending_request is None or pending_request.metadata.multiplexed_model_id:
            return fallback
        problem = request_problem(pending_request.args, pending_request.kwargs)
        if problem is None or not candidate_replicas:
            return fallback
        by_name = {replica.replica_id.unique_id: replica for replica in candidate_replicas}
        owner = owner_of(problem_key(problem), sorted(by_name))
        assert owner is not None
        cache = self.replica_queue_len_cache
        queue_lengths = {name: cache.get(replica.replica_id) for name, replica in by_name.items()}
        if is_imbalanced(owner, queue_lengths, self._imbalance_threshold):
            return fallback
        # The owner alone first; when it cannot take the call (full, or not answering its probe),
        # Serve moves on to its own pair in the same attempt.
        return [[by_name[owner]], *fallback]
