"""Transfer attacks: crafted on the surrogate, judged on the target."""

from __future__ import annotations

import pytest
import torch

from pytest_robust import RobustConfigError
from pytest_robust import evaluate


class NearestNeighbour(torch.nn.Module):
    """Predicts the label of the nearest stored sample (logits: minus the distance to each
    class's nearest sample). Stored samples are >= 0.63 apart in L2, so no L-inf
    perturbation of 0.03 (L2 <= 0.24) can change its answer on them: robust by construction."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("points", x.flatten(1).clone())
        self.register_buffer("labels", y.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dist = torch.cdist(x.flatten(1), self.points)
        per_class = torch.full((len(x), 10), float("inf"), device=x.device)
        per_class = per_class.scatter_reduce(1, self.labels.expand(len(x), -1), dist, reduce="amin")
        return -per_class


def test_examples_are_scored_on_the_target_not_the_surrogate(digits_cnn, digits_data):
    x, y = digits_data
    target = NearestNeighbour(x, y)
    eps = 0.03
    white_box = evaluate(digits_cnn, digits_data, attack="pgd", eps=eps)
    assert white_box.n_success > 10  # the surrogate itself is breakable here
    result = evaluate(target, digits_data, attack="transfer", surrogate=digits_cnn, eps=eps)
    assert result.clean_acc == 1.0
    assert result.n_success == 0 and result.robust_acc == 1.0
    # The surrogate is fooled where the white-box attack broke it, and on the samples it
    # misclassifies anyway (the target gets those right, so they are attacked here).
    fooled = white_box.n_success + (white_box.n - white_box.n_clean_correct)
    assert result.details["surrogate_success_rate"] == pytest.approx(fooled / result.n)
    assert result.details["via"] == "pgd"


def test_transfer_to_the_surrogate_itself_equals_the_white_box_attack(digits_cnn, digits_data):
    white_box = evaluate(digits_cnn, digits_data, attack="bim", eps=0.08, steps=10)
    transfer = evaluate(
        digits_cnn,
        digits_data,
        attack="transfer",
        surrogate=digits_cnn,
        via="bim",
        eps=0.08,
        steps=10,
    )
    assert transfer.robust == white_box.robust
    assert transfer.params["via"] == "bim" and transfer.params["steps"] == 10


def test_an_ensemble_of_surrogates(digits_cnn, digits_data):
    x, y = digits_data
    result = evaluate(
        digits_cnn,
        digits_data,
        attack="transfer",
        surrogate=[digits_cnn, NearestNeighbour(x, y)],
        via="fgsm",
        eps=0.1,
    )
    assert result.details["surrogates"] == 2
    assert 0 < result.success_rate < 1


def test_transfer_is_validated(digits_cnn, digits_data):
    with pytest.raises(RobustConfigError, match="needs surrogate="):
        evaluate(digits_cnn, digits_data, attack="transfer", eps=0.1)
    with pytest.raises(RobustConfigError, match="did you mean 'pgd'"):
        evaluate(
            digits_cnn, digits_data, attack="transfer", surrogate=digits_cnn, via="pgdd", eps=0.1
        )
    with pytest.raises(RobustConfigError, match="restarts= is not an argument"):
        evaluate(
            digits_cnn,
            digits_data,
            attack="transfer",
            surrogate=digits_cnn,
            via="bim",
            eps=0.1,
            restarts=2,
        )
