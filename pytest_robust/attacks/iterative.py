"""Iterative gradient attacks: BIM, PGD and the iterative least-likely class method.

- BIM (Kurakin et al. 2017): FGSM repeated with step alpha, projected after every step,
  starting at the clean input.
- PGD (Madry et al. 2018): BIM from a uniformly random point of the eps-ball, optionally
  restarted; each restart attacks only the samples not broken yet.
- ILLC (Kurakin et al. 2017): BIM towards the class the model finds least likely on the
  clean input; success means reaching that class.
"""

from __future__ import annotations

import torch

from pytest_robust.attacks.eot import EOT
from pytest_robust.attacks.gradient import ALPHA
from pytest_robust.attacks.gradient import GradientAttack
from pytest_robust.attacks.gradient import steps_param
from pytest_robust.attacks.registry import register_attack
from pytest_robust.params import Param

KURAKIN = "Kurakin, Goodfellow, Bengio 2017, Adversarial Examples in the Physical World"


@register_attack
class BIM(GradientAttack):
    name = "bim"
    params = {"steps": steps_param(20), "alpha": ALPHA, "eot": EOT}
    reference = KURAKIN


@register_attack
class PGD(GradientAttack):
    name = "pgd"
    params = {
        "steps": steps_param(20),
        "alpha": ALPHA,
        "random_start": Param(bool, True, doc="start from a uniform point of the eps-ball"),
        "restarts": Param(int, 1, minimum=1, doc="random restarts, each on unbroken samples"),
        "eot": EOT,
    }
    default_random_start = True
    reference = "Madry et al. 2018, Towards Deep Learning Models Resistant to Adversarial Attacks"


@register_attack
class ILLC(GradientAttack):
    name = "illc"
    params = {"steps": steps_param(20), "alpha": ALPHA, "eot": EOT}
    targeted = True
    targetable = False  # its target is always the least likely class
    reference = KURAKIN

    def choose_targets(self, clean_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # The least likely class on the clean input (never the true class: it is the argmax).
        return clean_logits.argmin(dim=1)
