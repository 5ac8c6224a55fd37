"""Data adapters, and bad input that must give a clear message rather than a torch traceback."""

from __future__ import annotations

import re

import pytest
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset
from torch.utils.data import TensorDataset

from pytest_robust import ProbabilityOutputWarning
from pytest_robust import RobustConfigError
from pytest_robust import ShuffledDataWarning
from pytest_robust import evaluate
from pytest_robust.engine.data import load_samples


class PairDataset(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], int(self.y[i])


@pytest.fixture
def small(digits_data):
    x, y = digits_data
    return x[:50], y[:50]


def test_every_data_form_gives_the_same_samples(small):
    x, y = small
    forms = [
        (x, y),
        [x, y],
        (x.numpy(), y.numpy()),
        TensorDataset(x, y),
        PairDataset(x, y),
        DataLoader(TensorDataset(x, y), batch_size=7),
    ]
    fingerprints = {load_samples(form).fingerprint for form in forms}
    assert len(fingerprints) == 1
    assert len(load_samples(DataLoader(TensorDataset(x, y), batch_size=7), max_samples=10)) == 10


def test_same_result_for_every_data_form(digits_cnn, small):
    x, y = small
    a = evaluate(digits_cnn, (x, y), attack="pgd", eps=0.1, steps=5)
    b = evaluate(
        digits_cnn, DataLoader(TensorDataset(x, y), batch_size=9), attack="pgd", eps=0.1, steps=5
    )
    assert a.robust == b.robust and a.data_fingerprint == b.data_fingerprint


def test_shuffling_loader_warns(small):
    with pytest.warns(ShuffledDataWarning, match="shuffle=False"):
        load_samples(DataLoader(TensorDataset(*small), batch_size=8, shuffle=True))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (object(), "must be an \\(x, y\\) pair"),
        ((torch.rand(4, 3), torch.tensor([0, 1, 0])), "4 inputs but 3 labels"),
        ((torch.rand(4, 3), torch.rand(4)), "integer class indices"),
        ((torch.rand(4, 3), torch.zeros(4, 2, dtype=torch.long)), "argmax"),
        ((torch.randint(0, 255, (4, 3)), torch.zeros(4, dtype=torch.long)), "x.float\\(\\) / 255"),
        (TensorDataset(torch.rand(4, 3)), "exactly two"),
        ((torch.rand(0, 3), torch.zeros(0, dtype=torch.long)), "no samples"),
    ],
)
def test_bad_data_is_explained(data, message):
    with pytest.raises(RobustConfigError, match=message):
        load_samples(data)


def test_inputs_outside_bounds_suggest_bounds_or_normalize(digits_cnn, small):
    x, y = small
    with pytest.raises(RobustConfigError, match=r"bounds=.*Normalize"):
        evaluate(digits_cnn, ((x - 0.5) / 0.25, y), attack="fgsm", eps=0.1)


class Constant(torch.nn.Module):
    def __init__(self, output: torch.Tensor | tuple[torch.Tensor, ...]) -> None:
        super().__init__()
        self.output = output
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor):
        if isinstance(self.output, tuple):
            return self.output
        return self.output.expand(len(x), -1) + self.weight * x.flatten(1)[:, :1]


def test_nan_model_is_an_error(small):
    model = Constant(torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(RobustConfigError, match="NaN or infinite logits for 50 of 50"):
        evaluate(model, small, attack="fgsm", eps=0.1)


def test_tuple_output_is_an_error(small):
    model = Constant((torch.zeros(50, 10), torch.zeros(50)))
    with pytest.raises(RobustConfigError, match="returned a tuple"):
        evaluate(model, small, attack="fgsm", eps=0.1)


def test_labels_beyond_the_classes_are_an_error(small):
    model = Constant(torch.tensor([[1.0, 0.0]]))  # 2 classes, digits labels go to 9
    with pytest.raises(RobustConfigError, match=r"labels range over \[0, 9\].*2 classes"):
        evaluate(model, small, attack="fgsm", eps=0.1)


def test_shape_mismatch_names_the_input_shape(small):
    model = torch.nn.Linear(10, 10)  # expects 10 features, gets (1, 8, 8)
    with pytest.raises(RobustConfigError, match="inputs of shape \\(50, 1, 8, 8\\)"):
        evaluate(model, small, attack="fgsm", eps=0.1)


def test_probability_outputs_warn(digits_cnn, small):
    model = torch.nn.Sequential(digits_cnn, torch.nn.Softmax(dim=1))
    with pytest.warns(ProbabilityOutputWarning, match="drop the final softmax"):
        evaluate(model, small, attack="fgsm", eps=0.1)


def test_not_a_module_is_an_error(small):
    with pytest.raises(RobustConfigError, match=r"must be a torch\.nn\.Module"):
        evaluate(lambda x: x, small, attack="fgsm", eps=0.1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attack": "pgdd", "eps": 0.1}, "did you mean 'pgd'"),
        ({"attack": "pgd", "eps": -0.1}, "eps=-0.1: must be >= 0"),
        ({"attack": "pgd", "eps": 0.1, "min_accuracy": 0.5}, "did you mean 'min_acc'"),
        ({"attack": "fgsm", "eps": 0.1, "steps": 5}, r"it is a parameter of .*bim, .*illc, .*pgd"),
        ({"attack": "pgd", "eps": 0.1, "min_acc": 1.5}, "min_acc=1.5: must be <= 1"),
        ({"attack": "pgd", "eps": 0.1, "norm": "l3"}, "'linf' or 'l2'"),
        ({"attack": "pgd", "eps": 0.1, "bounds": (1, 0)}, "low < high"),
        ({"attack": "pgd", "eps": [0.1, 0.2]}, "evaluate\\(\\) runs one check"),
        ({"attack": "pgd", "eps": 0.1, "device": "cuda:7"}, "device="),
    ],
)
def test_bad_arguments_are_explained(digits_cnn, small, kwargs, message):
    with pytest.raises(RobustConfigError, match=message):
        evaluate(digits_cnn, small, **kwargs)


class Detached(torch.nn.Module):
    """Detaches its input: the logits carry no gradient back to x."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.detach().flatten(1))


def test_a_model_without_input_gradients_is_explained(small):
    x, _ = small
    model = Detached()
    with torch.no_grad():
        y = model(x).argmax(1)
    with pytest.raises(RobustConfigError, match="does not depend on its input through autograd"):
        evaluate(model, (x, y), attack="pgd", eps=0.1)


def test_restarts_without_random_start_are_refused(digits_cnn, small):
    with pytest.raises(RobustConfigError, match="repeats the same deterministic run"):
        evaluate(digits_cnn, small, attack="pgd", eps=0.1, random_start=False, restarts=3)


def _one_value_at(x: torch.Tensor, value: float) -> torch.Tensor:
    x = x.clone()
    x[0, 0] = value
    return x


def _suggested_bounds(message: str) -> tuple[float, float]:
    low, high = re.search(r"pass bounds=\(([^,]+), ([^)]+)\)", message).groups()  # type: ignore[union-attr]
    return float(low), float(high)


@pytest.mark.parametrize(
    ("shift", "shown", "outside"),
    [
        (
            lambda x: _one_value_at(x, 1.0001),
            "1.0001",
            "1 above 1 \\(by up to 0.0001\\)",
        ),
        (lambda x: x - 2e-5, "-2e-05", "below 0 \\(by up to 2e-05\\)"),
        (lambda x: x * 16, "16", "above 1 \\(by up to 15\\)"),
    ],
    ids=["one-value-at-1.0001", "all-shifted-by-2e-5", "0-to-16"],
)
def test_inputs_outside_bounds_say_where_and_by_how_much(small, shift, shown, outside):
    """Catches an extreme rounded onto the bound it breaks ('range over [0, 1] but
    bounds=(0, 1)') and suggested bounds that do not hold the data."""
    x, y = small
    x = shift(x.flatten(1)).reshape(x.shape)
    with pytest.raises(RobustConfigError) as error:
        evaluate(
            torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)),
            (x, y),
            attack="fgsm",
            eps=0.1,
        )
    message = str(error.value)
    assert re.search(
        rf"range over \[[^]]*{re.escape(shown)}[^]]*\] but bounds=\(0, 1\)", message
    ), message
    assert re.search(rf"(\d+) of {x.numel()} input values lie outside, .*{outside}", message), (
        message
    )
    low, high = _suggested_bounds(message)
    assert low <= float(x.min()) and high >= float(x.max())
    count = int(((x < 0) | (x > 1)).sum())
    assert f"{count} of {x.numel()} input values" in message


def test_integer_logits_are_explained(small):
    """Catches torch's raw NotImplementedError ('log_softmax ... not implemented for Long')."""

    class Rounded(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (self.linear(x.flatten(1)) * 10).long()

    with pytest.raises(
        RobustConfigError,
        match=r"^model returned logits of dtype torch\.int64.*floating-point logits",
    ):
        evaluate(Rounded(), small, attack="pgd", eps=0.1, steps=2)


def test_a_model_on_the_meta_device_is_explained(small):
    """Catches torch's raw 'Cannot copy out of meta tensor; no data!'."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10, device="meta"))
    with pytest.raises(
        RobustConfigError, match=r"^model has 2 parameter.*meta device.*load_state_dict"
    ):
        evaluate(model, small, attack="pgd", eps=0.1, steps=2)


class FailsLater(torch.nn.Module):
    """Works for its first `calls` forward passes, then raises (a model bug that only an
    attack's inputs, or a later call, reach)."""

    def __init__(self, calls: int, error: Exception) -> None:
        super().__init__()
        with torch.random.fork_rng():  # seeded: some samples clean-correct, so attacked
            torch.manual_seed(0)
            self.linear = torch.nn.Linear(64, 10)
        self.calls, self.error = calls, error

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls -= 1
        if self.calls < 0:
            raise self.error
        return self.linear(x.flatten(1))


@pytest.mark.parametrize("error", [RuntimeError("boom"), ValueError("bad value"), KeyError("k")])
def test_a_model_failing_part_way_is_not_blamed_on_input_shapes(small, error):
    """Catches 'check that the data's inputs have the shape the model expects' for a model
    that already gave logits for every clean input of that shape, and an exception other
    than RuntimeError escaping raw."""
    model = FailsLater(calls=1, error=error)
    with pytest.raises(RobustConfigError) as raised:
        evaluate(model, small, attack="pgd", eps=0.1, steps=2, sanity="off")
    message = str(raised.value)
    assert message.startswith(f"model raised {type(error).__name__}: ")
    assert (
        "part-way through the check" in message and "gave logits for every clean input" in message
    )
    assert "Check that the data's inputs have the shape" not in message
    assert raised.value.__cause__ is error  # the user's own traceback stays reachable
    assert model.training  # borrowed and given back, also on error


def test_a_model_failing_on_its_first_batch_still_points_to_shapes(small):
    model = FailsLater(calls=0, error=ValueError("expected 3 channels"))
    with pytest.raises(
        RobustConfigError,
        match=r"ValueError: expected 3 channels\. Check that the data's inputs have the shape",
    ) as raised:
        evaluate(model, small, attack="pgd", eps=0.1, steps=2)
    assert isinstance(raised.value.__cause__, ValueError)
