"""The client over TLS, against a TLS-terminating proxy in front of a plaintext gRPC server, as
the service is deployed (Serve's gRPC proxy speaks plaintext; an Ingress or Gateway terminates
TLS). The certificates are made here, for this test only."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cot_transfer.cli.connection import connection_options
from cot_transfer.client import CotTransferClient, RetryPolicy, RpcFailedError
from cot_transfer.serving.common.serving_config import ServingConfig
from cot_transfer.serving.edge import encode
from cot_transfer.v1 import cot_transfer_pb2 as pb
from cot_transfer.v1 import cot_transfer_pb2_grpc as pb_grpc

CONFIG = ServingConfig.from_yaml(Path(__file__).resolve().parents[2] / "configs" / "local-cpu.yaml")
ONCE = RetryPolicy(max_attempts=2, initial_backoff_s=0.01, max_backoff_s=0.01)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate it signed for localhost: (ca.pem, server.pem, server.key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("cot-transfer test CA"))
        .issuer_name(_name("cot-transfer test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (folder / "ca.pem", folder / "server.pem", folder / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


class InfoOnly(pb_grpc.TransferServicer):
    async def GetInfo(self, request: pb.GetInfoRequest, context: grpc.aio.ServicerContext) -> pb.GetInfoResponse:  # noqa: N802
        return encode.service_info_to_proto(CONFIG)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@pytest.fixture
async def tls_address(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """A plaintext gRPC server behind a TLS-terminating TCP proxy: (proxy address, CA file)."""
    ca_path, cert_path, key_path = make_certificates(tmp_path)
    backend = grpc.aio.server()
    pb_grpc.add_TransferServicer_to_server(InfoOnly(), backend)
    backend_port = backend.add_insecure_port("127.0.0.1:0")
    await backend.start()

    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert_path, key_path)
    tls.set_alpn_protocols(["h2"])  # gRPC insists on HTTP/2 negotiated by ALPN

    async def terminate(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        backend_reader, backend_writer = await asyncio.open_connection("127.0.0.1", backend_port)
        await asyncio.gather(_pipe(client_reader, backend_writer), _pipe(backend_reader, client_writer))

    proxy = await asyncio.start_server(terminate, "127.0.0.1", 0, ssl=tls)
    proxy_port = proxy.sockets[0].getsockname()[1]
    yield f"localhost:{proxy_port}", ca_path
    proxy.close()
    await backend.stop(None)


async def test_the_client_speaks_tls_with_the_servers_ca(tls_address: tuple[str, Path]) -> None:
    address, ca_path = tls_address
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_path.read_bytes())
    async with CotTransferClient(address, credentials=credentials, retry=ONCE) as client:
        info = await client.get_info(timeout_s=30)
    assert info.strong_model == CONFIG.strong.engine.name


async def test_the_cli_options_tls_and_ca_cert_make_a_working_channel(tls_address: tuple[str, Path]) -> None:
    address, ca_path = tls_address
    args = argparse.Namespace(tls=True, ca_cert=ca_path, token_env=None)
    async with CotTransferClient(address, retry=ONCE, **connection_options(args)) as client:
        assert (await client.get_info(timeout_s=30)).weak_model == CONFIG.weak.engine.name


@pytest.mark.parametrize("credentials", ["plaintext", "system roots"])
async def test_a_channel_without_the_ca_cannot_connect(tls_address: tuple[str, Path], credentials: str) -> None:
    address, _ = tls_address
    options = {} if credentials == "plaintext" else {"credentials": grpc.ssl_channel_credentials()}
    async with CotTransferClient(address, retry=ONCE, **options) as client:
        with pytest.raises(RpcFailedError) as caught:
            await client.get_info(timeout_s=10)
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
