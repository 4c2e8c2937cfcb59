"""Ray's own token authentication, from the side of a driver that lacks the token.

The Kubernetes overlays turn it on (``authOptions.mode: token``); here a real cluster started the
way the two-node tests start theirs (``RAY_AUTH_MODE=token`` and a fresh ``RAY_AUTH_TOKEN`` in
every process) is joined by drivers with the token, with another one and with none.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from benchmarks.cluster import TwoNodeCluster, two_node_cluster

pytestmark = [pytest.mark.integration, pytest.mark.own_stack]

# A refused driver gives up on its own well before this; the bound keeps a hang from passing silently.
DRIVER_TIMEOUT_S = 90
DRIVER = (
    "import ray\n"
    "try:\n"
    "    ray.init(address={address!r}, logging_level='ERROR')\n"
    "    print('JOINED', len(ray.nodes()))\n"
    "except Exception as error:\n"
    "    print('REFUSED', type(error).__name__, str(error)[:300])\n"
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[TwoNodeCluster]:
    with two_node_cluster() as started:
        yield started


def join(cluster: TwoNodeCluster, env: Mapping[str, str]) -> str:
    """The last line a fresh driver with ``env`` prints: JOINED or REFUSED and why."""
    done = subprocess.run(
        [sys.executable, "-c", DRIVER.format(address=cluster.address)],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=DRIVER_TIMEOUT_S,
    )
    lines = done.stdout.strip().splitlines()
    return lines[-1] if lines else f"exit {done.returncode}: {done.stderr[-500:]}"


def driver_env(cluster: TwoNodeCluster, home: Path, **auth: str) -> dict[str, str]:
    """The cluster's environment with ``auth`` as the driver's Ray auth settings, and a home
    without ``~/.ray/auth_token``, where Ray looks for a token it is not given."""
    env = {key: value for key, value in cluster.env.items() if key not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    return {**env, "HOME": str(home), **auth}


def test_a_driver_with_the_clusters_token_joins(cluster: TwoNodeCluster, tmp_path: Path) -> None:
    """The same driver as the refused ones, with the token: what refuses them is the token alone."""
    token = {key: cluster.env[key] for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    assert join(cluster, driver_env(cluster, tmp_path, **token)) == "JOINED 2"


@pytest.mark.parametrize(
    "auth",
    [
        pytest.param({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 32}, id="another-token"),
        pytest.param({"RAY_AUTH_MODE": "token"}, id="token-mode-without-a-token"),
        pytest.param({}, id="no-auth-settings"),
    ],
)
def test_a_driver_without_the_clusters_token_is_refused(
    cluster: TwoNodeCluster, tmp_path: Path, auth: dict[str, str]
) -> None:
    outcome = join(cluster, driver_env(cluster, tmp_path, **auth))
    # Ray reports a wrong token as a failure to connect, a missing one as an AuthenticationError.
    assert outcome.startswith(("REFUSED ConnectionError", "REFUSED AuthenticationError")), outcome
