"""A result's per-sample flags as '0'/'1' strings (engine/result.py flag_string): built
from the tensor's bytes, the same string as a loop over its values writes."""

from __future__ import annotations

import pytest
import torch

from pytest_robust.engine.result import count_set
from pytest_robust.engine.result import flag_string

CASES = {
    "empty": torch.zeros(0, dtype=torch.bool),
    "one true": torch.tensor([True]),
    "mixed": torch.tensor([True, False, False, True]),
    "random 1000": torch.rand(1000, generator=torch.Generator().manual_seed(0)) > 0.3,
    "integers (nonzero is set)": torch.tensor([0, 2, 1, -1]),
    "a strided view": torch.tensor([True, False, True, True, False, False])[::2],
}


@pytest.mark.parametrize("name", list(CASES))
def test_flag_string_writes_one_character_per_sample(name: str) -> None:
    flags = CASES[name]
    expected = "".join("1" if f else "0" for f in flags.tolist())
    assert flag_string(flags) == expected
    assert count_set(flag_string(flags)) == int(flags.bool().sum())
