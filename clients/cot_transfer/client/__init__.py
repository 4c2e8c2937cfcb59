"""Async Python client of the CoT-transfer gRPC API, with typed results.

It needs only grpcio, protobuf and the pure ``cot_transfer.domain``: never the server's packages.
"""

from cot_transfer.client.client import CotTransferClient
from cot_transfer.client.convert import Sampling
from cot_transfer.client.keepalive import Keepalive
from cot_transfer.client.retry import RetryPolicy, RpcFailedError

__all__ = ["CotTransferClient", "Keepalive", "RetryPolicy", "RpcFailedError", "Sampling"]
