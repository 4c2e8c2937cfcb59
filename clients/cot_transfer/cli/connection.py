"""How a command reaches the service: TLS credentials, the bearer token and the deadline."""

from __future__ import annotations

import argparse
import os
from typing import Any

import grpc


def connection_options(args: argparse.Namespace) -> dict[str, Any]:
    """TLS credentials and the bearer token for `run` and `plan`; the local demo needs neither."""
    options: dict[str, Any] = {}
    if getattr(args, "tls", False) or getattr(args, "ca_cert", None) is not None:
        root = args.ca_cert.read_bytes() if args.ca_cert is not None else None
        options["credentials"] = grpc.ssl_channel_credentials(root_certificates=root)
    token_env = getattr(args, "token_env", None)
    if token_env and os.environ.get(token_env):
        options["token"] = os.environ[token_env]
    if getattr(args, "deadline", None) is not None:
        options["timeout_s"] = args.deadline
    return options
