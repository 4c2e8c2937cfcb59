"""Toy reasoning testbed: a synthetic chain-arithmetic task and tiny strong/weak models trained on CPU.

``tasks`` and ``tokenizer`` are pure Python; ``train`` and ``evaluate`` import torch, transformers
and vLLM only when they run. See README.md in this folder.
"""
