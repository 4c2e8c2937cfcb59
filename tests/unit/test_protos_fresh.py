"""The committed generated code is exactly what `make protos` produces from protos/."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROTO = "cot_transfer/v1/cot_transfer.proto"
GENERATED = ("cot_transfer_pb2.py", "cot_transfer_pb2.pyi", "cot_transfer_pb2_grpc.py")


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{REPO / 'protos'}",
            f"--python_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            str(REPO / "protos" / PROTO),
        ],
        check=True,
    )
    for name in GENERATED:
        committed = (REPO / "protos" / "cot_transfer" / "v1" / name).read_text()
        fresh = (tmp_path / "cot_transfer" / "v1" / name).read_text()
        assert committed == fresh, f"protos/cot_transfer/v1/{name} is stale: run `make protos`"
