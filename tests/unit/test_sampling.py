import math

import pytest

from cot_transfer.domain.errors import InvalidArgumentError
from cot_transfer.domain.sampling import SamplingParams, check_sample_count, check_text


@pytest.mark.parametrize(
    ("settings", "n", "field"),
    [
        (SamplingParams(-0.1, 0.95, 10), 1, "s.temperature"),
        (SamplingParams(2.01, 0.95, 10), 1, "s.temperature"),
        (SamplingParams(math.nan, 0.95, 10), 1, "s.temperature"),
        (SamplingParams(0.6, 0.0, 10), 1, "s.top_p"),
        (SamplingParams(0.6, 1.01, 10), 1, "s.top_p"),
        (SamplingParams(0.6, math.nan, 10), 1, "s.top_p"),
        (SamplingParams(0.6, 0.95, 0), 1, "s.max_tokens"),
        (SamplingParams(0.0, 0.95, 10), 2, "s.temperature"),
    ],
)
def test_out_of_range_sampling_names_the_field(settings: SamplingParams, n: int, field: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        settings.check("s", n=n)
    assert caught.value.field == field


def test_valid_settings_pass() -> None:
    assert SamplingParams(0.0, 1.0, 1).check("s", n=1).temperature == 0.0
    assert SamplingParams(2.0, 0.01, 4096).check("s", n=128).top_p == 0.01


def test_sample_count_cap() -> None:
    assert check_sample_count(128, 128) == 128
    for bad in (0, -1, 129):
        with pytest.raises(InvalidArgumentError, match=r"\[1, 128\]"):
            check_sample_count(bad, 128)


@pytest.mark.parametrize("blank", ["", " ", "\n\t "])
def test_blank_text_is_invalid(blank: str) -> None:
    with pytest.raises(InvalidArgumentError, match="problem: must not be empty"):
        check_text(blank, "problem")
