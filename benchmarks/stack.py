"""The served stack under test: ``cot-transfer serve`` in a subprocess on a prepared config."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from benchmarks.ports import free_port
from benchmarks.workload import REPO
from cot_transfer.cli.serve import read_start_lines
from cot_transfer.client import CotTransferClient
from cot_transfer.serving.common.serve_options import gpu_per_replica
from cot_transfer.serving.common.serving_config import ServingConfig

SERVE_START_TIMEOUT_S = 900


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """``weak.engine.max_num_seqs=256``: sets a dotted key of the config (the value is YAML)."""
    path, separator, value = assignment.partition("=")
    if not separator or not path:
        raise SystemExit(f"bench: --set takes KEY.PATH=VALUE, got {assignment!r}")
    *parents, leaf = path.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = yaml.safe_load(value)


def prepare_config(source: Path, out_dir: Path, overrides: Sequence[str] = ()) -> tuple[Path, ServingConfig]:
    """The serving config on free ports with absolute model paths and the ``--set`` overrides."""
    data = yaml.safe_load(source.read_text())
    for assignment in overrides:
        apply_override(data, assignment)
    data["grpc_port"] = free_port()
    data["http_port"] = free_port()
    data["metrics_port"] = free_port()
    for role in ("strong", "weak"):
        model = Path(data[role]["engine"]["model"])
        if not model.is_absolute():
            data[role]["engine"]["model"] = str((source.parent / model).resolve())
        if not (Path(data[role]["engine"]["model"]) / "config.json").exists():
            raise SystemExit(f"bench: the {role} model {data[role]['engine']['model']} is missing (no config.json)")
    path = out_dir / "serving.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, ServingConfig.from_yaml(path)


def uses_gpu(config: ServingConfig) -> bool:
    return any(gpu_per_replica(model.serve_options()) > 0 for model in (config.strong, config.weak))


class ServedStack:
    """``cot-transfer serve --config FILE`` in a subprocess, as a user starts it; SIGINT stops it."""

    def __init__(
        self, config_path: Path, log_path: Path, token_env: str | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.config_path = config_path
        # E.g. RAY_ADDRESS: the stack joins a running cluster (benchmarks/cluster.py).
        self.env = env or {}
        self.log_path = log_path
        # With auth on, the stack gets the caller's token, or a fresh one for this run.
        self.token_env = token_env
        self.token = (os.environ.get(token_env) or secrets.token_urlsafe(24)) if token_env else None
        self.process: subprocess.Popen[str] | None = None
        self.address = ""
        self.metrics_url = ""

    def start(self) -> None:
        log_file = self.log_path.open("w")
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            **self.client_env(),
            **self.env,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cot_transfer.cli.main", "serve", "--config", str(self.config_path)],
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
            cwd=REPO,
            env=env,
        )
        log_file.close()
        printed = self._read_start_lines(("grpc", "metrics"))
        self.address = printed["grpc"]
        self.metrics_url = printed["metrics"]

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    def client(self, timeout_s: float) -> CotTransferClient:
        return CotTransferClient(self.address, timeout_s=timeout_s, token=self.token)

    def client_env(self) -> dict[str, str]:
        """What a subprocess client (locust) needs in its environment: the token, under the name it reads."""
        if not self.token_env or not self.token:
            return {}
        return {self.token_env: self.token, "COT_LOAD_TOKEN_ENV": self.token_env}

    def _read_start_lines(self, keys: tuple[str, ...]) -> dict[str, str]:
        assert self.process is not None
        return read_start_lines(self.process, keys, SERVE_START_TIMEOUT_S, lambda: f"see {self.log_path}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=180)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
