"""Async Python client of the CoT-transfer gRPC API, with typed results."""

from cot_transfer.client.client import CotTransferClient, RetryPolicy, RpcFailedError
from cot_transfer.client.convert import Sampling

__all__ = ["CotTransferClient", "RetryPolicy", "RpcFailedError", "Sampling"]
