"""The ``force_answer`` mode: the received prefix is closed and the receiver answers at once.

How the reasoning block is closed is the receiver's reasoning format:

* think blocks (qwen3, deepseek_r1, custom): a newline, the end marker (``</think>``), a blank
  line; the receiver then writes its final answer;
* harmony (gpt_oss): the analysis message ends and the final channel opens
  (``<|end|><|start|>assistant<|channel|>final<|message|>``);
* plain: there is no block to close, so an answer cue follows the prefix (``\\nAnswer:``) and
  the completion is graded with the cue in front, as the answer line it completes.

The completion then holds the final answer only, so it is graded as it is; its budget is the
receiver's ``force_answer_max_tokens``, not the reasoning budget.
"""

from __future__ import annotations

from cot_transfer.engine.base import PromptTokenizer
from cot_transfer.serving.replicas.reasoning_formats import ReasoningCodec

HARMONY_FINAL_OPENING = "<|end|><|start|>assistant<|channel|>final<|message|>"
PLAIN_ANSWER_CUE = "\nAnswer:"


def closing_ids(codec: ReasoningCodec, tokenizer: PromptTokenizer) -> list[int]:
    """The tokens written after the prefix to close the receiver's reasoning (see above)."""
    name = codec.format.name
    if name == "plain":
        return tokenizer.encode(PLAIN_ANSWER_CUE)
    if name == "gpt_oss":
        return tokenizer.encode(HARMONY_FINAL_OPENING)
    return [*tokenizer.encode("\n"), *codec.reasoning_end_ids, *tokenizer.encode("\n\n")]


def graded_text(codec: ReasoningCodec, completion: str) -> str:
    """The text a force_answer completion is graded on: the completion, after the plain
    format's answer cue that it continues."""
    return PLAIN_ANSWER_CUE + completion if codec.format.name == "plain" else completion
