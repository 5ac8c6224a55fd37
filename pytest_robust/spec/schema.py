"""The one table of what a check takes: common parameters, thresholds, run settings.

Each name has one home here; validation (validate.py), precedence (resolve.py), the
command-line parsers (plugin/options.py) and the attacks read it. No torch, no pytest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Protocol

from pytest_robust.params import Param

THRESHOLDS = ("min_acc", "max_success", "max_drop", "max_confidence", "max_zero_frac", "min_median")
# Thresholds of check="gradients" (the others belong to attacks).
GRADIENT_THRESHOLDS = ("max_zero_frac", "min_median")
CHECKS = ("gradients", "masking", "certify")
# What check="certify" can prove with (docs/certify.md).
CERTIFY_METHODS = ("ibp", "crown", "smoothing")
SANITY_LEVELS = ("off", "cheap", "full")

# Arguments every attack takes. Attack-specific ones (steps, alpha, ...) are declared by
# each attack class in its `params` mapping.
COMMON_PARAMS: dict[str, Param] = {
    "attack": Param(str, doc="name of a registered attack, e.g. 'fgsm', 'pgd'"),
    "eps": Param(float, minimum=0.0, doc="perturbation budget, in the units of the inputs"),
    "norm": Param("norm", "linf", doc="'linf' or 'l2': the norm of the eps-ball"),
    "bounds": Param("bounds", (0.0, 1.0), doc="(low, high): the valid input range"),
    "mask": Param(
        "mask",
        None,
        optional=True,
        doc="a boolean tensor broadcasting to one sample's shape, True where a feature may "
        "not be perturbed (immutable or categorical columns); every attack keeps them",
    ),
    "min_acc": Param(float, None, 0.0, 1.0, optional=True, doc="fail if robust_acc < this"),
    "max_success": Param(float, None, 0.0, 1.0, optional=True, doc="fail if success_rate > this"),
    "max_drop": Param(
        float, None, 0.0, 1.0, optional=True, doc="fail if clean_acc - robust_acc > this"
    ),
    "max_confidence": Param(
        float,
        None,
        0.0,
        1.0,
        optional=True,
        doc="fail if any successful adversarial input is classified with more confidence",
    ),
    "max_zero_frac": Param(
        float,
        None,
        0.0,
        1.0,
        optional=True,
        doc="check='gradients': fail if more samples than this have an exactly zero gradient",
    ),
    "min_median": Param(
        float,
        None,
        minimum=0.0,
        optional=True,
        doc="check='gradients': fail if the median mean |input gradient| is below this",
    ),
    "check": Param(
        str,
        None,
        optional=True,
        choices=CHECKS,
        doc="'gradients' (input-gradient magnitudes, no attack), 'masking' (the attack "
        "with the full gradient-masking diagnosis) or 'certify' (a proven lower bound on "
        "robust accuracy, with method=)",
    ),
    "allow_masking": Param(
        bool, False, doc="report masking flags without failing a passing threshold"
    ),
    "sanity": Param(
        str,
        "cheap",
        choices=SANITY_LEVELS,
        doc="'cheap' flags with every check, 'full' diagnosis, or 'off'",
    ),
    "strict": Param(
        bool,
        False,
        doc="a threshold passes only when the 95% interval clears it, not just the measured "
        "value (also --robust-strict, ini robust_strict)",
    ),
    "batch_size": Param(int, 256, minimum=1, doc="samples per forward/backward pass"),
    "max_samples": Param(int, None, minimum=1, optional=True, doc="evaluate the first N"),
    "seed": Param(
        int,
        0,
        minimum=0,
        doc="seed for the attack's random numbers (and, with eot or draws > 1, for the "
        "model's own randomness)",
    ),
    "draws": Param(
        int,
        None,
        minimum=1,
        optional=True,
        doc="forward passes (seeded draws) judging each point of a randomised model: robust "
        "only if correct on every draw; default 1, or 10 when an attack uses eot > 1",
    ),
    "device": Param(str, "auto", doc="'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"),
    "target": Param(
        "target", None, optional=True, doc="targeted mode: class, 'least_likely', 'random', ..."
    ),
    "output": Param(
        "output", None, optional=True, doc="how to get logits from a tuple/dict model output"
    ),
    "inputs": Param(
        str,
        None,
        optional=True,
        doc="dict batches (Hugging Face style): the key holding the inputs, e.g. "
        "'pixel_values'; a model whose forward() has a parameter of that name is called "
        "with it by keyword",
    ),
    "labels": Param(
        str, None, optional=True, doc="dict batches: the key holding the labels, e.g. 'labels'"
    ),
    "model": Param(str, "robust_model", doc="name of the fixture that gives the model"),
    "amp": Param(
        bool,
        False,
        doc="CUDA mixed precision for the attack; float32 re-verification of every result",
    ),
    "decide_early": Param(
        bool,
        False,
        doc="stop once the 95% Wilson interval of the samples so far settles every threshold",
    ),
    "data": Param(str, "robust_data", doc="name of the fixture that gives the data"),
}


@dataclass(frozen=True)
class Preset:
    """A named worst case per sample over registered attacks (docs/attacks.md).

    `versions` maps each version to its members, in order, each with the settings it runs
    with. An open preset ("strong": one version, no settings) stands for its list of
    members: the user's attack parameters reach them as in attack=[...]. A fixed preset
    ("autoattack") runs its members' own settings, chosen by `version=`; the members'
    parameters are refused (to change them, list the members). `withheld` names versions
    that exist but cannot be chosen yet, with the reason.
    """

    versions: Mapping[str, tuple[tuple[str, Mapping[str, Any]], ...]]
    default: str = ""
    withheld: Mapping[str, str] = field(default_factory=dict)
    # Member parameters the user may still set on a fixed preset (they reach every member
    # that declares them), e.g. a randomised model's eot=.
    passes: tuple[str, ...] = ()
    # AutoAttack's check_square_sr: flag a black-box member that breaks more than this
    # fraction of the attacked samples the gradient members left (None: no such check).
    black_box_check: float | None = None

    @property
    def fixed(self) -> bool:
        return any(config for members in self.versions.values() for _, config in members)

    @property
    def params(self) -> dict[str, Param]:
        """The preset's own parameters: version= for a fixed preset."""
        if not self.fixed:
            return {}
        choices = tuple(v for v in self.versions if v not in self.withheld)
        return {
            "version": Param(
                str,
                self.default,
                choices=choices,
                doc=f"which version of the preset runs: {', '.join(map(repr, choices))}",
            )
        }

    def members(self, version: str | None = None) -> tuple[str, ...]:
        return tuple(name for name, _ in self.configured(version))

    def configured(self, version: str | None = None) -> tuple[tuple[str, Mapping[str, Any]], ...]:
        return self.versions[self.default if version is None else version]


# Named combinations of attacks (worst case per sample), declared by attacks/registry.py
# once the attacks they name are registered; documented in docs/attacks.md.
PRESETS: dict[str, Preset] = {}

# Settings that also have a command-line option and an ini key.
RUN_SETTINGS = ("device", "seed", "max_samples", "batch_size", "sanity")
NOT_ON_MARKER = {
    "device": "the device is chosen per run: use --robust-device, the robust_device ini key, "
    "or override the robust_device fixture",
}

# What check="gradients" takes: it runs no attack, so no budget and no attack thresholds.
GRADIENT_CHECK_ARGS = (
    "check",
    *GRADIENT_THRESHOLDS,
    "allow_masking",
    "output",
    "inputs",
    "labels",
    "bounds",
    "batch_size",
    "max_samples",
    "seed",
    "device",
    "model",
    "data",
)

# The parameters of check="certify" beyond the common ones (kept apart from the attacks':
# a certificate runs no attack).
CERTIFY_PARAMS: dict[str, Param] = {
    "method": Param(
        str,
        None,
        optional=True,
        choices=CERTIFY_METHODS,
        doc="check='certify': how to prove it; 'ibp' (interval bound propagation), 'crown' "
        "(linear bounds, tighter, ReLU networks) or 'smoothing' (randomized smoothing: "
        "certifies the smoothed classifier)",
    ),
    # method="smoothing" only (validate.py refuses them for ibp). alpha is a confidence
    # level here, unrelated to an attack's step size: certify never reads attack params.
    "sigma": Param(
        float, None, optional=True, doc="smoothing: the noise's standard deviation (> 0)"
    ),
    "n0": Param(int, 100, minimum=1, doc="smoothing: draws that pick the class to certify"),
    "n": Param(int, 10000, minimum=1, doc="smoothing: draws that estimate its probability"),
    "alpha": Param(
        float, 0.001, doc="smoothing: the probability that a certificate is wrong, in (0, 0.5)"
    ),
}
# What only method="smoothing" takes (sigma is required there).
SMOOTHING_ARGS = ("sigma", "n0", "n", "alpha", "seed", "output")
# Why method="ibp" refuses each of them.
IBP_REFUSED = {
    "seed": "IBP is deterministic: nothing is drawn at random",
    "output": "IBP bounds a model that returns logits (a chain of layers), not an adapter",
    **{
        name: "it is a setting of method='smoothing' (randomized smoothing)"
        for name in ("sigma", "n0", "n", "alpha")
    },
}

# What check="certify" takes: a budget and accuracy thresholds, no attack settings.
CERTIFY_CHECK_ARGS = (
    "check",
    "method",
    "eps",
    "norm",
    "bounds",
    "min_acc",
    "max_drop",
    "strict",
    "batch_size",
    "max_samples",
    "device",
    "model",
    "data",
    "inputs",
    "labels",
    *SMOOTHING_ARGS,
)
# Why an argument that check="certify" refuses does not apply, where a reason helps.
CERTIFY_REFUSED = {
    "attack": "a certificate runs no attack; give the attack its own test (reports show both)",
    "max_success": "no attack runs, so nothing succeeds; gate the certified accuracy with min_acc",
    "max_confidence": "no attack runs, so there is no adversarial input; use min_acc",
    "target": "a certificate covers every class at once (the untargeted claim)",
    "amp": "the bounds are computed in float64; reduced precision would make them unsound",
    "sanity": "the sanity checks diagnose attacks; a certificate needs no such diagnosis",
    "decide_early": "the certificate of every sample costs about two forward passes: no need",
    "allow_masking": "no attack runs, so there is no masking to allow",
    "draws": "IBP bounds a deterministic model; a randomised one has no single function to "
    "bound (see docs/certify.md)",
}


class AttackSchema(Protocol):
    """What validation needs to know of an attack (Attack classes satisfy this)."""

    params: Mapping[str, Param]
    norms: tuple[str, ...]
    targetable: bool
    delegate: str | None
    eps_ball: bool
