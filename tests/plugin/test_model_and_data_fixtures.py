"""The user's model and data fixtures: a broken model, bad data or a missing fixture is an
ERROR at setup that says what to fix; model= and data= pick the named fixtures; a fixture
that skips skips the test; and the model and data come back unchanged.

The world: see conftest.py.
"""

from __future__ import annotations

import pytest

NO_TORCH_TRACEBACK = "*site-packages/torch*"


def test_model_returning_nan_is_a_setup_error(rtester: pytest.Pytester) -> None:
    """Catches a broken model being reported as a robustness failure (or a pass): it must
    be an ERROR at setup naming the fixture and the NaN, without a torch traceback."""
    rtester.makepyfile(
        """
        import pytest
        import torch
        from pytest_robust import robust

        class NaNModel(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.linear = torch.nn.Linear(10, 2)

            def forward(self, x):
                return self.linear(x) * float("nan")

        @pytest.fixture(scope="session")
        def robust_model():
            return NaNModel()

        @robust(attack="fgsm", eps=0.1, min_acc=0.5)
        def test_gate():
            pass
        """
    )
    result = rtester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ERROR at setup of test_gate*", "*fixture 'robust_model'*NaN*"])
    result.stdout.no_fnmatch_line(NO_TORCH_TRACEBACK)


def test_data_outside_the_bounds_is_a_setup_error_with_the_fix(
    rtester: pytest.Pytester,
) -> None:
    """Catches pixel-scale (0..255) data being attacked with a [0, 1] eps: it must be an
    ERROR that suggests bounds= or Normalize."""
    rtester.makepyfile(
        """
        import pytest
        from conftest import make_data
        from pytest_robust import robust

        @pytest.fixture(scope="session")
        def robust_data():
            x, y = make_data()
            return x * 255, y

        @robust(attack="fgsm", eps=0.1, min_acc=0.5)
        def test_gate():
            pass
        """
    )
    result = rtester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*ERROR at setup of test_gate*", "*fixture 'robust_data'*bounds=*Normalize*"]
    )
    result.stdout.no_fnmatch_line(NO_TORCH_TRACEBACK)


def test_missing_robust_model_fixture_explains_how_to_define_one(
    pytester: pytest.Pytester,
) -> None:
    """Catches a bare 'fixture not found' (or a crash) when the user has not defined
    robust_model yet: the error must say how to define one."""
    pytester.makepyfile(
        """
        from pytest_robust import robust

        @robust(attack="fgsm", eps=0.1, min_acc=0.5)
        def test_gate():
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*ERROR at setup of test_gate*", "*no robust_model fixture: define one in conftest.py*"]
    )


def test_model_argument_naming_no_fixture_is_an_error_naming_it(
    rtester: pytest.Pytester,
) -> None:
    """Catches model='nope' silently falling back to robust_model, or failing with an
    unhelpful lookup error."""
    rtester.makepyfile(
        """
        from pytest_robust import robust

        @robust(attack="fgsm", eps=0.1, min_acc=0.5, model="nope")
        def test_gate():
            pass
        """
    )
    result = rtester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*model='nope' names no fixture*"])


def test_model_argument_picks_the_named_fixture(rtester: pytest.Pytester) -> None:
    """Catches model= / data= being ignored: the named fixtures must be the ones attacked
    (here a model that always predicts class 0, so only half the labels are right)."""
    rtester.makepyfile(
        """
        import pytest
        import torch
        from conftest import make_data
        from pytest_robust import robust

        class AlwaysZero(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.w = torch.nn.Parameter(torch.zeros(10))

            def forward(self, x):
                s = x.flatten(1) @ self.w
                return torch.stack([2 + torch.zeros_like(s), s], dim=1)

        @pytest.fixture(scope="session")
        def zero_model():
            return AlwaysZero()

        @pytest.fixture(scope="session")
        def first_sixteen():
            x, y = make_data()
            return x[:16], y[:16]

        @robust(attack="fgsm", eps=0.1, model="zero_model", data="first_sixteen")
        def test_named(robustness):
            assert robustness.n == 16
            assert robustness.clean_acc == 0.5
        """
    )
    rtester.runpytest().assert_outcomes(passed=1)


def test_model_fixture_with_a_missing_dependency_names_the_missing_fixture(
    rtester: pytest.Pytester,
) -> None:
    """Catches the plugin blaming the model fixture ("names no fixture") when the model
    fixture exists but itself requests a fixture that does not: the message must name
    the fixture that is really missing."""
    rtester.makepyfile(
        """
        import pytest
        from pytest_robust import robust

        @pytest.fixture(scope="session")
        def my_model(weights_path):
            return None

        @robust(attack="fgsm", eps=0.1, model="my_model")
        def test_gate():
            pass
        """
    )
    result = rtester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*weights_path*"])
    result.stdout.no_fnmatch_line("*model='my_model' names no fixture*")


def test_model_fixture_that_skips_skips_the_test(rtester: pytest.Pytester) -> None:
    """Catches pytest.skip() in the model fixture (weights not available on this machine)
    being turned into an error or a failure."""
    rtester.makepyfile(
        """
        import pytest
        from pytest_robust import robust

        @pytest.fixture(scope="session")
        def robust_model():
            pytest.skip("weights not available")

        @robust(attack="fgsm", eps=0.1, min_acc=0.9)
        def test_gate():
            pass
        """
    )
    rtester.runpytest().assert_outcomes(skipped=1)


def test_model_that_does_not_fit_the_data_is_a_setup_error(rtester: pytest.Pytester) -> None:
    """Catches a shape mismatch surfacing as a raw torch traceback instead of an ERROR
    naming the fixture and the input shape."""
    rtester.makepyfile(
        """
        import pytest
        import torch
        from pytest_robust import robust

        @pytest.fixture(scope="session")
        def robust_model():
            return torch.nn.Linear(20, 2)

        @robust(attack="fgsm", eps=0.1)
        def test_gate():
            pass
        """
    )
    result = rtester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'robust_model': model failed on *shape (64, 10)*"])
    result.stdout.no_fnmatch_line(NO_TORCH_TRACEBACK)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (
            "FailsLater()",
            "*fixture 'robust_model': model raised ValueError: weird input, part-way through "
            "the check*It gave logits for every clean input*",
        ),
        (
            "torch.nn.Linear(10, 2, device='meta')",
            "*fixture 'robust_model': model has 2 parameter(s) or buffer(s) on the meta device*",
        ),
        (
            "Rounded()",
            "*fixture 'robust_model': model returned logits of dtype torch.int64*",
        ),
    ],
    ids=["fails-part-way", "meta-device", "integer-logits"],
)
def test_model_faults_name_the_fixture_cause_and_fix(
    rtester: pytest.Pytester, model: str, expected: str
) -> None:
    """Catches a raw torch error (meta tensors, log_softmax on Long) or a hint about input
    shapes for a model that already worked on inputs of that shape."""
    rtester.makepyfile(
        f"""
        import pytest
        import torch
        from pytest_robust import robust

        class FailsLater(torch.nn.Linear):
            def __init__(self):
                super().__init__(10, 2)
                self.calls = 0

            def forward(self, x):
                self.calls += 1
                if self.calls > 1:
                    raise ValueError("weird input")
                return super().forward(x)

        class Rounded(torch.nn.Linear):
            def __init__(self):
                super().__init__(10, 2)

            def forward(self, x):
                return super().forward(x).long()

        @pytest.fixture(scope="session")
        def robust_model():
            return {model}

        @robust(attack="pgd", eps=0.1, steps=2, sanity="off")
        def test_gate():
            pass
        """
    )
    result = rtester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([expected])
    result.stdout.no_fnmatch_line(NO_TORCH_TRACEBACK)
    result.stdout.no_fnmatch_line("*Check that the data's inputs have the shape*")


def test_model_and_data_come_back_unchanged(rtester: pytest.Pytester) -> None:
    """Catches the check leaving the user's model in eval mode, with requires_grad turned
    off, or with changed weights, or changing the data, as the test body sees them."""
    rtester.makepyfile(
        """
        import pytest
        import torch
        from conftest import Linear, make_data
        from pytest_robust import robust

        @pytest.fixture(scope="session")
        def robust_model():
            model = Linear().train()
            model.linear.weight.requires_grad_(True)
            model.linear.bias.requires_grad_(False)
            return model

        @robust(attack="pgd", eps=0.1, steps=2)
        def test_unchanged(robustness, robust_model, robust_data):
            assert robust_model.training
            assert robust_model.linear.weight.requires_grad
            assert not robust_model.linear.bias.requires_grad
            assert torch.equal(robust_model.linear.weight, torch.ones(1, 10))
            assert float(robust_model.linear.bias) == -5.0
            x, y = make_data()
            assert torch.equal(robust_data[0], x) and torch.equal(robust_data[1], y)
        """
    )
    rtester.runpytest().assert_outcomes(passed=1)
