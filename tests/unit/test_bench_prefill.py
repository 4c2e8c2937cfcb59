"""The prefill lower bound, the metric parsing and the percentile of the benchmark harness."""

import random

import pytest

from benchmarks.metrics import PrefixCacheCounters, metric_label_values, metric_sum, prefix_cache_counters
from benchmarks.overhead import percentile
from benchmarks.prefill import computed_tokens, prefill_lower_bound, reusable_tokens

SEQUENCE = list(range(100, 110))  # one problem's longest prompt: 10 tokens


def prompts(*lengths: int, sequence: list[int] = SEQUENCE) -> list[list[int]]:
    return [sequence[:length] for length in lengths]


def test_reusable_tokens_are_whole_blocks_and_leave_the_last_token() -> None:
    assert reusable_tokens(10, 0, 4) == 0
    assert reusable_tokens(10, 3, 4) == 0
    assert reusable_tokens(10, 7, 4) == 4
    assert reusable_tokens(10, 10, 4) == 8
    # A prompt that fills its blocks exactly still recomputes its last block for the logits.
    assert reusable_tokens(8, 8, 4) == 4
    assert reusable_tokens(0, 0, 4) == 0
    assert computed_tokens(8, 8, 4) == 4


def test_reusable_tokens_rejects_a_bad_block_size() -> None:
    with pytest.raises(ValueError, match="block_size"):
        reusable_tokens(10, 5, 0)


def test_longest_prompt_once_and_shorter_ones_past_their_last_shared_full_block() -> None:
    bound = prefill_lower_bound([prompts(2, 4, 7, 10)], block_size=4)
    # 10 (longest) + 7-4 + 4-0 (its only block would hold the last token) + 2
    assert bound.lower_bound == 10 + 3 + 4 + 2
    assert bound.prompt_tokens == 23
    assert bound.prompts == 4


def test_every_further_sample_computes_its_unshareable_tail() -> None:
    bound = prefill_lower_bound([prompts(2, 4, 7, 10)], block_size=4, samples_per_prompt=3)
    tails = (10 - 8) + (7 - 4) + (4 - 0) + (2 - 0)
    assert bound.lower_bound == 19 + 2 * tails
    assert bound.prompt_tokens == 3 * 23


def test_the_bound_does_not_depend_on_the_order_prompts_are_given_in() -> None:
    group = prompts(1, 3, 5, 6, 8, 9, 10)
    expected = prefill_lower_bound([group], block_size=4, samples_per_prompt=2)
    for seed in range(5):
        shuffled = list(group)
        random.Random(seed).shuffle(shuffled)
        assert prefill_lower_bound([shuffled], block_size=4, samples_per_prompt=2) == expected


def test_block_size_one_leaves_only_one_token_per_shorter_prompt() -> None:
    bound = prefill_lower_bound([prompts(3, 6, 10)], block_size=1)
    assert bound.lower_bound == 10 + 1 + 1


def test_problems_share_only_whole_blocks_they_have_in_common() -> None:
    other = [100, 101, 102, 103, 900, 901, 902, 903, 904]  # same first block of 4 as SEQUENCE
    unrelated = [7, 8, 9, 10, 11]
    bound = prefill_lower_bound([prompts(10), [other], [unrelated]], block_size=4)
    assert bound.lower_bound == 10 + (9 - 4) + 5


def test_samples_per_prompt_must_be_positive() -> None:
    with pytest.raises(ValueError, match="samples_per_prompt"):
        prefill_lower_bound([prompts(4)], block_size=4, samples_per_prompt=0)


EXPOSITION = """\
# HELP vllm_prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm_prefix_cache_queries_total counter
vllm_prefix_cache_queries_total{engine="0",model_name="testbed-strong"} 500.0
vllm_prefix_cache_queries_total{engine="0",model_name="testbed-weak"} 1200.0
vllm_prefix_cache_queries_total{engine="1",model_name="testbed-weak"} 300.0
# TYPE vllm_prefix_cache_hits_total counter
vllm_prefix_cache_hits_total{engine="0",model_name="testbed-weak"} 900.0
vllm_prefix_cache_hits_total{engine="0",model_name="testbed-strong"} 10.0
ray_vllm_cache_config_info{block_size="128",cache_dtype="auto"} 1.0
"""


def test_metric_sum_adds_the_series_of_one_model() -> None:
    assert metric_sum(EXPOSITION, "vllm_prefix_cache_queries_total", {"model_name": "testbed-weak"}) == 1500.0
    assert metric_sum(EXPOSITION, "vllm_prefix_cache_queries_total") == 2000.0
    assert metric_sum(EXPOSITION, "vllm_prefix_cache_queries_total", {"model_name": "nope"}) == 0.0


def test_prefix_cache_counters_and_their_delta() -> None:
    counters = prefix_cache_counters(EXPOSITION, "testbed-weak")
    assert counters == PrefixCacheCounters(queries=1500.0, hits=900.0)
    assert counters.computed == 600.0
    assert counters.minus(PrefixCacheCounters(100.0, 50.0)) == PrefixCacheCounters(1400.0, 850.0)


def test_nan_samples_are_left_out_and_in_process_names_use_colons() -> None:
    exposition = (
        "# TYPE vllm:prefix_cache_queries counter\n"
        'vllm:prefix_cache_queries_total{model_name="w"} 40.0\n'
        'vllm:prefix_cache_queries_total{model_name="w",engine="1"} NaN\n'
    )
    assert prefix_cache_counters(exposition, "w", prefix="vllm:") == PrefixCacheCounters(queries=40.0, hits=0.0)


def test_metric_label_values_reads_the_block_size() -> None:
    assert metric_label_values(EXPOSITION, "ray_vllm_cache_config_info", "block_size") == ["128"]


def test_percentile_interpolates_like_numpy() -> None:
    values = [float(value) for value in range(1, 101)]
    assert percentile(values, 0.5) == pytest.approx(50.5)
    assert percentile(values, 0.99) == pytest.approx(99.01)
    assert percentile([3.0], 0.99) == 3.0
    with pytest.raises(ValueError):
        percentile([], 0.5)
