"""The CUDA path: the same VLLMEngine on the GPU build of vLLM. Skipped without a CUDA GPU."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.engine.base import GenerationRequest
from cot_transfer.engine.config import EngineConfig
from tests.conftest import REPO

pytestmark = pytest.mark.gpu


def _cuda_available() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    if subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode != 0:
        return False
    from cot_transfer.engine.vllm_engine import accelerator_available

    return accelerator_available()


requires_cuda = pytest.mark.skipif(not _cuda_available(), reason="needs a CUDA GPU and the GPU build of vLLM")


@requires_cuda
async def test_vllm_engine_generates_on_the_gpu() -> None:
    from cot_transfer.engine.vllm_engine import VLLMEngine

    engine = VLLMEngine(
        EngineConfig(model=str(REPO / "models" / "testbed" / "strong"), dtype="float32", gpu_memory_utilization=0.2)
    )
    await engine.start()
    try:
        tokenizer = engine.tokenizer
        prompt = tokenizer.encode(tokenizer.render_problem("3+4*2"))
        request = GenerationRequest(prompt, n=8, sampling=SamplingParams(0.6, 0.95, 64, seed=0))
        outputs = [output async for output in engine.generate(request, "gpu-smoke")]
        assert outputs[-1].finished
        assert len(outputs[-1].samples) == 8
        assert all(sample.token_ids for sample in outputs[-1].samples)
    finally:
        await engine.shutdown()
