"""A Hugging Face-style model (input by keyword, an output object with `.logits`) on a
DataLoader of dict batches runs through a @robust gate with no wrapper written by the user
(issue 17 part 5). The outcomes are known by construction (tests/plugin/conftest.py): the
tiny world's robust accuracy is 1.0 at eps=0.03 and 0.5 at eps=0.1."""

from __future__ import annotations

import pytest

HF_WORLD = """
import dataclasses

import pytest
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset

from conftest import Linear
from conftest import make_data
from pytest_robust import robust


@dataclasses.dataclass
class SequenceClassifierOutput:
    logits: torch.Tensor


class HFStyle(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = Linear()

    def forward(self, pixel_values=None, labels=None):
        return SequenceClassifierOutput(logits=self.inner(pixel_values))


class Items(Dataset):
    def __init__(self):
        self.x, self.y = make_data()

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"pixel_values": self.x[i], "labels": self.y[i]}


@pytest.fixture(scope="session")
def hf_model():
    return HFStyle().eval()


@pytest.fixture(scope="session")
def hf_data():
    return DataLoader(Items(), batch_size=16)
"""


def test_a_hugging_face_style_model_on_dict_batches_runs_through_a_gate(
    rtester: pytest.Pytester,
) -> None:
    rtester.makepyfile(
        HF_WORLD
        + """
HF = dict(model="hf_model", data="hf_data", inputs="pixel_values", labels="labels")


@robust(attack="pgd", eps=0.03, steps=5, min_acc=0.9, **HF)
def test_holds():
    pass


@robust(attack="pgd", eps=0.1, steps=5, min_acc=0.9, **HF)
def test_breaks():
    pass


@robust(attack="strong", eps=0.03, steps=5, queries=20, min_acc=0.9, **HF)
def test_binary_strong_holds():
    pass


@robust(attack="autoattack", eps=0.1, min_acc=0.9, **HF)
def test_binary_autoattack_breaks():
    pass
"""
    )
    result = rtester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*test_holds * pgd * 0.03  64  1.000  1.000 *pass",
            "*test_breaks * pgd * 0.1  64  1.000  0.500 *fail",
            "*test_binary_strong_holds * apgd-ce+square * 0.03  64  1.000  1.000 *pass",
            "*test_binary_autoattack_breaks * autoattack * 0.1  64  1.000  0.500 *fail",
        ]
    )
    # The member the binary classifier rules out is named where the failure is explained.
    result.stdout.fnmatch_lines(
        ["robust_acc 0.500 < min_acc 0.900 *under autoattack*; apgd-t left out: its DLR loss*"]
    )


def test_a_dict_loader_without_keys_names_the_test_the_keys_and_the_fix(
    rtester: pytest.Pytester,
) -> None:
    rtester.makepyfile(
        HF_WORLD
        + """
@robust(attack="pgd", eps=0.03, steps=5, model="hf_model", data="hf_data")
def test_gate():
    pass
"""
    )
    result = rtester.runpytest("-p", "no:randomly")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_gate*",
            # [[] and []] match a literal bracket in fnmatch.
            "fixture 'hf_data': batch 0 of the DataLoader is a dict with keys "
            "[[]'labels', 'pixel_values'[]]*Pass inputs='pixel_values', labels='labels' (on*",
        ]
    )


def test_a_mask_is_kept_and_a_bad_one_names_the_test_argument_and_fix(
    rtester: pytest.Pytester,
) -> None:
    """The tiny world's weights are all 1: an L-inf attack moves the score by 10 * eps, by
    5 * eps with half the features frozen. The weak samples' margin is 0.5: eps=0.08 (a
    move of 0.4) breaks none of them, eps=0.12 (0.6) breaks them all, though unmasked
    eps=0.08 breaks them (tests/plugin/conftest.py)."""
    rtester.makepyfile(
        """
import torch
from pytest_robust import robust

HALF = torch.tensor([True, False] * 5)


@robust(attack="pgd", eps=0.08, steps=5, mask=HALF, min_acc=0.9)
def test_half_frozen_holds():
    pass


@robust(attack="pgd", eps=0.12, steps=5, mask=HALF, min_acc=0.9)
def test_half_frozen_breaks():
    pass


@robust(attack="pgd", eps=0.08, steps=5, min_acc=0.9)
def test_unmasked_breaks():
    pass


@robust(attack="pgd", eps=0.1, steps=5, mask=torch.tensor([True, False]))
def test_bad_mask():
    pass


# Per-feature bounds on the marker: wide enough that they never clip here (the same
# outcome as unbounded), or of a shape that does not fit.
@robust(attack="pgd", eps=0.08, steps=5, bounds=(torch.zeros(10), torch.ones(10)), min_acc=0.9)
def test_feature_bounds_unmasked_breaks():
    pass


@robust(attack="pgd", eps=0.08, steps=5, bounds=(torch.zeros(3), 1.0))
def test_bad_feature_bounds():
    pass
"""
    )
    result = rtester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=3, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_bad_feature_bounds*",
            "bounds=: the low bound has shape (3,), which does not broadcast to one sample's*",
        ]
    )
    result.stdout.fnmatch_lines(
        ["*::test_feature_bounds_unmasked_breaks * pgd * 0.08  64  1.000  0.500 *fail"]
    )
    result.stdout.fnmatch_lines(
        [
            "*::test_half_frozen_holds * pgd * 0.08  64  1.000  1.000 *pass",
            "*::test_half_frozen_breaks * pgd * 0.12  64  1.000  0.500 *fail",
            "*::test_unmasked_breaks * pgd * 0.08  64  1.000  0.500 *fail",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_bad_mask*",
            "*mask= has shape (2,), which does not broadcast to one sample's shape (10,)*",
        ]
    )
