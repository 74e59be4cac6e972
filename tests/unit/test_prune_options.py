"""--prune / --prune-criterion parsing: the values users type, and one-line errors."""

import pytest

from mcc.driver.pruning import check_criterion, drift_summary, parse_prune
from mcc.errors import MccError


@pytest.mark.parametrize("value, expected", [(None, None), ("zero", "zero"), ("0.3", 0.3),
                                             (0.5, 0.5), ("0.999", 0.999)])
def test_prune_values(value, expected):
    assert parse_prune(value) == expected


@pytest.mark.parametrize("value, fragment", [("half", "'zero' or a ratio"), ("0", "between 0"),
                                             ("1", "between 0"), ("-0.2", "between 0"),
                                             ("nan", "between 0")])
def test_bad_prune_values(value, fragment):
    with pytest.raises(MccError, match=fragment):
        parse_prune(value)


def test_criterion():
    assert check_criterion("l2") == "l2"
    with pytest.raises(MccError, match="l1, l2"):
        check_criterion("l3")


def test_drift_summary_names_samples_and_agreement():
    text = drift_summary({"samples": "4 seeded random inputs", "outputs": {
        "y": {"max_abs": 0.5, "rel_l2": 0.1, "top1_agreement": 0.75}}})
    assert "4 seeded random inputs" in text and "top-1 agrees 75%" in text


@pytest.mark.parametrize("channels, count, expected", [
    (64, 19, 16),    # 45 kept would leave a partial vector: keep 48
    (256, 76, 64),   # 180 -> 192 kept
    (512, 153, 144),  # 359 -> 368 kept
    (64, 16, 16),    # already whole vectors
    (48, 14, 14),    # small layers are pruned exactly
    (100, 30, 30),   # a count no vector width divides stays as asked
])
def test_ratio_prune_keeps_whole_vectors_in_large_layers(channels, count, expected):
    from mcc.passes.prune_channels import _aligned_count

    assert _aligned_count(channels, count) == expected
