"""The TLS gateway of deploy/base/tls-gateway, end to end: its very nginx.conf, run by Debian's nginx
with a certificate made here, in front of the in-process service (plaintext gRPC, as Serve's proxy
is); clients connect as deploy/README.md says. And its manifests agree with that config."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as aio_health

from cot_transfer.client import CotTransferClient, RetryPolicy, RpcFailedError
from tests.conftest import REPO, InProcessService, free_port
from tests.unit.test_client_tls import make_certificates

from .conftest import DEPLOY, Manifest, only

GATEWAY = DEPLOY / "base" / "tls-gateway"
NGINX_CONF = GATEWAY / "nginx.conf"
# Debian's nginx package, unpacked here when no nginx is on PATH (no daemon is installed or started).
UNPACKED = REPO / ".tools" / "nginx"
ONCE = RetryPolicy(max_attempts=2, initial_backoff_s=0.01, max_backoff_s=0.01)
# What the pod has (tls-gateway.yaml) -> what the test puts in its place.
LISTEN = "listen 8443 ssl http2;"
UPSTREAM = "server cot-transfer-grpc:9000;"
CERTIFICATE = "/etc/nginx/tls/tls.crt"
KEY = "/etc/nginx/tls/tls.key"
# Past nginx's default grpc_read_timeout (60 s).
QUIET_S = 65


def _nginx_candidates() -> Iterator[Path]:
    on_path = shutil.which("nginx")
    if on_path:
        yield Path(on_path)
    yield UNPACKED / "usr" / "sbin" / "nginx"


@pytest.fixture(scope="session")
def nginx() -> Path:
    """nginx from PATH, or Debian's nginx package unpacked under .tools/nginx (done here when missing)."""
    for candidate in _nginx_candidates():
        if candidate.is_file():
            return candidate
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        pytest.skip("nginx is missing and cannot be unpacked here (needs apt-get and dpkg: Debian/Ubuntu)")
    UNPACKED.mkdir(parents=True, exist_ok=True)
    script = (
        "{ apt-get download nginx 2>/dev/null || { apt-get update -qq && apt-get download nginx; }; }"
        " && dpkg -x nginx_*.deb nginx && rm -f nginx_*.deb"
    )
    result = subprocess.run(
        ["bash", "-c", script], cwd=UNPACKED.parent, capture_output=True, text=True, timeout=600, check=False
    )
    for candidate in _nginx_candidates():
        if candidate.is_file():
            return candidate
    pytest.skip("nginx is missing and Debian's package could not be unpacked: " + result.stderr[-500:])


def gateway_config(folder: Path, port: int, upstream: str, certificate: Path, key: Path) -> Path:
    """The shipped nginx.conf with this machine's port, upstream, certificate and temporary folder."""
    text = NGINX_CONF.read_text()
    assert "/tmp/" in text
    text = text.replace("/tmp/", f"{folder}/")
    for old, new in {
        LISTEN: f"listen 127.0.0.1:{port} ssl http2;",
        UPSTREAM: f"server {upstream};",
        CERTIFICATE: str(certificate),
        KEY: str(key),
    }.items():
        assert text.count(old) == 1, f"nginx.conf no longer has {old!r} once"
        text = text.replace(old, new)
    path = folder / "nginx.conf"
    path.write_text(text)
    return path


@contextlib.asynccontextmanager
async def running_gateway(nginx: Path, folder: Path, upstream: str) -> AsyncIterator[tuple[str, Path]]:
    """nginx with the shipped config in front of ``upstream``: (its address, the CA file)."""
    ca, certificate, key = make_certificates(folder)
    port = free_port()
    config = gateway_config(folder, port, upstream, certificate, key)
    log = folder / "nginx.log"
    with log.open("w") as output:
        process = await asyncio.create_subprocess_exec(
            *(str(nginx), "-p", str(folder), "-c", str(config), "-e", "stderr"), stdout=output, stderr=output
        )
    try:
        for _ in range(100):
            assert process.returncode is None, f"nginx exited {process.returncode}:\n{log.read_text()}"
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"nginx did not listen on {port}:\n{log.read_text()}")
        yield f"localhost:{port}", ca
    finally:
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.wait(), timeout=30)
    assert "[emerg]" not in log.read_text()


@pytest.fixture
async def gateway(nginx: Path, in_process_service: InProcessService, tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    async with running_gateway(nginx, tmp_path, in_process_service.address) as address_and_ca:
        yield address_and_ca


async def test_a_client_with_the_ca_calls_and_checks_health_through_the_gateway(gateway: tuple[str, Path]) -> None:
    address, ca = gateway
    credentials = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
    async with CotTransferClient(address, credentials=credentials, retry=ONCE) as client:
        info = await client.get_info(timeout_s=30)
    assert info.weak_model
    async with grpc.aio.secure_channel(address, credentials) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
    assert health.status == health_pb2.HealthCheckResponse.SERVING


async def test_the_documented_cli_command_runs_an_experiment_over_tls(
    gateway: tuple[str, Path], tmp_path: Path
) -> None:
    """deploy/README.md: `cot-transfer run --address HOST:PORT --tls --ca-cert CA.pem ...`; a
    Transfer.Run stream, every row of it, through nginx's HTTP/2 proxying."""
    address, ca = gateway
    out = tmp_path / "run"
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "cot_transfer.cli.main", "run", "--address", address, "--tls", "--ca-cert", str(ca)),
        *("--problems", str(REPO / "datasets" / "testbed-demo.jsonl"), "--limit", "2", "--n", "2"),
        *("--out", str(out)),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=300)
    assert process.returncode == 0, output.decode()[-3000:]
    assert (out / "results.csv").is_file() and (out / "run.json").is_file()


async def test_plaintext_to_the_gateway_cannot_connect(gateway: tuple[str, Path]) -> None:
    address, _ = gateway
    async with CotTransferClient(address, retry=ONCE) as client:
        with pytest.raises(RpcFailedError) as caught:
            await client.get_info(timeout_s=10)
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE


async def test_with_serve_down_the_gateway_answers_unavailable(nginx: Path, tmp_path: Path) -> None:
    """No Serve proxy behind the gateway (a restart, a lost node): a status the client retries."""
    async with running_gateway(nginx, tmp_path, f"127.0.0.1:{free_port()}") as (address, ca):
        credentials = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
        async with CotTransferClient(address, credentials=credentials, retry=ONCE) as client:
            with pytest.raises(RpcFailedError) as caught:
                await client.get_info(timeout_s=30)
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE


async def test_a_stream_quiet_past_nginxs_default_read_timeout_stays_open(nginx: Path, tmp_path: Path) -> None:
    """A Transfer.Run stream can go quiet for minutes while a problem's CoT is written: the gateway
    must not cut it after nginx's default 60 s. A health Watch is such a stream: one message, then
    nothing until the status changes."""
    backend = grpc.aio.server()
    health = aio_health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, backend)
    port = backend.add_insecure_port("127.0.0.1:0")
    await backend.start()
    try:
        await health.set("", health_pb2.HealthCheckResponse.SERVING)
        async with running_gateway(nginx, tmp_path, f"127.0.0.1:{port}") as (address, ca):
            credentials = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
            async with grpc.aio.secure_channel(address, credentials) as channel:
                stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=180)
                assert (await stream.read()).status == health_pb2.HealthCheckResponse.SERVING
                await asyncio.sleep(QUIET_S)
                await health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
                changed = await asyncio.wait_for(stream.read(), timeout=30)
                assert changed.status == health_pb2.HealthCheckResponse.NOT_SERVING, changed
                stream.cancel()
    finally:
        await backend.stop(None)


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_the_gateway_manifests_agree_with_its_config(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    manifests = rendered[overlay]
    deployment = only(manifests, "Deployment", "cot-transfer-tls-gateway")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    # nginx runs the generated ConfigMap's nginx.conf, the file the tests above run.
    config_map = only(manifests, "ConfigMap", volumes["config"]["configMap"]["name"])
    assert config_map["data"] == {"nginx.conf": NGINX_CONF.read_text()}
    assert container["command"] == ["nginx", "-c", f"{mounts['config']}/nginx.conf"]
    # The certificate and key come from the kubernetes.io/tls Secret's keys.
    assert volumes["tls"]["secret"]["secretName"] == "cot-transfer-grpc-tls"
    assert {CERTIFICATE, KEY} == {f"{mounts['tls']}/tls.crt", f"{mounts['tls']}/tls.key"}
    # Every temporary path of the config is on the writable volume (the root file system is read-only).
    assert container["securityContext"]["readOnlyRootFilesystem"] is True and mounts["tmp"] == "/tmp"
    # The upstream is the plaintext gRPC Service on its port; clients reach the TLS port.
    grpc_service = only(manifests, "Service", "cot-transfer-grpc")
    upstream = f"{grpc_service['metadata']['name']}:{grpc_service['spec']['ports'][0]['port']}"
    assert f"server {upstream};" == UPSTREAM
    (port,) = container["ports"]
    assert f"listen {port['containerPort']} ssl http2;" == LISTEN
    tls_service = only(manifests, "Service", "cot-transfer-grpc-tls")
    assert tls_service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert [(p["port"], p["targetPort"]) for p in tls_service["spec"]["ports"]] == [(443, port["name"])]
    # Its own NetworkPolicy opens the TLS port alone.
    policy = only(manifests, "NetworkPolicy", "cot-transfer-tls-gateway")
    assert policy["spec"]["podSelector"] == {"matchLabels": deployment["spec"]["selector"]["matchLabels"]}
    assert policy["spec"]["ingress"] == [{"ports": [{"port": port["containerPort"], "protocol": "TCP"}]}]
