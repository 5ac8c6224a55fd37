"""A tiny world for pytester runs of the plugin, with outcomes known by construction.

`rtester` is a `pytest.Pytester` whose directory holds a conftest.py with:

- `robust_model`: a linear classifier with 2-class logits [0, s], s = sum(x) - 5
  (weights all 1, bias -5), so class 1 iff sum(x) > 5.
- `robust_data`: 64 samples of dimension 10, labels = the model's prediction (clean_acc 1.0).
  Each sample is c * ones(10) plus seeded zero-sum noise, so its score is exactly 10c - 5:
  even samples have margin |s| = 0.5 ("weak"), odd samples margin 2.0 ("strong").
  The model records the batch size of each forward pass in `robust_model.seen`.

An L-inf attack of budget eps moves the score by at most 10 * eps (every |w_i| = 1), and
FGSM reaches exactly that, always towards x = 0.5, so the bounds (0, 1) never clip. Hence:

    eps = 0 or 0.03  -> nothing breaks            robust_acc 1.0
    eps = 0.1        -> every weak sample breaks  robust_acc 0.5  (any even prefix too)
    eps = 0.3        -> everything breaks         robust_acc 0.0

PGD and BIM reach the same corner of the ball, so they agree with FGSM here.
"""

from __future__ import annotations

# hypothesis's pytest plugin imports hypothesis at the end of every run; pytester's
# in-process runs evict modules first imported inside them, so without this import
# every in-process run would re-import (and assertion-rewrite) hypothesis: ~1.5 s each.
import hypothesis  # noqa: F401

# The same for the HTML report's packages (matplotlib, Pillow, Jinja2): a re-import of
# matplotlib after such an eviction leaves it inconsistent ("'Figure' object has no
# attribute 'items'"), so they are imported here, once, before any in-process run.
import jinja2  # noqa: F401
import pytest

# The marker module is imported lazily (by `from pytest_robust import robust` or at
# collection); first imported inside an in-process run, it would be evicted afterwards, and a
# test that patches it would patch a module object the next run no longer uses.
import pytest_robust.plugin.marker
import pytest_robust.report.pictures  # noqa: F401

WORLD = '''
import pytest
import torch


class Linear(torch.nn.Module):
    """2-class logits [0, sum(x) - 5]."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(10, 1)
        with torch.no_grad():
            self.linear.weight.fill_(1.0)
            self.linear.bias.fill_(-5.0)
        self.seen = []  # batch sizes of every forward pass, for batch_size checks

    def forward(self, x):
        self.seen.append(x.shape[0])
        score = self.linear(x.flatten(1))
        return torch.cat([torch.zeros_like(score), score], dim=1)


def make_data(n=64):
    g = torch.Generator().manual_seed(0)
    i = torch.arange(n)
    margin = torch.where(i % 2 == 0, 0.5, 2.0)
    label = (i // 2) % 2
    sign = torch.where(label == 1, 1.0, -1.0)
    c = 0.5 + sign * margin / 10
    u = (torch.rand(n, 10, generator=g) - 0.5) * 0.1
    noise = u - u.mean(dim=1, keepdim=True)
    return c[:, None] + noise, label.long()


@pytest.fixture(scope="session")
def robust_model():
    return Linear().eval()


@pytest.fixture(scope="session")
def robust_data():
    return make_data()
'''


@pytest.fixture
def rtester(pytester: pytest.Pytester) -> pytest.Pytester:
    """pytester with the tiny world's conftest.py written into its directory."""
    pytester.makeconftest(WORLD)
    return pytester
