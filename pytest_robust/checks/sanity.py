"""The cheap sanity flags that decide whether a robustness number can be trusted (Carlini
et al. 2019).

`cheap_flags` runs with every check (unless sanity='off'): about one extra forward and a
few backward passes on the samples the attack will work on. The flags of a worst case
whose members include a black-box attack are settled here too (`resting_on_black_box`,
`black_box_share_flag`). The full diagnosis, which re-runs the evaluation, is
diagnosis.py's.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping

import torch

from pytest_robust.attacks import Attack
from pytest_robust.checks import gradients
from pytest_robust.checks.flags import MASKING
from pytest_robust.checks.flags import WARNING
from pytest_robust.checks.flags import Flag

Forward = Callable[[torch.Tensor], torch.Tensor]

# Gradient flags are measured on at most this many attacked samples: enough to see a
# fraction of a few percent, and a bounded cost on large evaluation sets.
GRADIENT_SAMPLES = 512


def probability_flag(clean_logits: torch.Tensor) -> list[Flag]:
    # all() of nothing is True: without a row there is no evidence either way.
    if len(clean_logits) == 0:
        return []
    rows_sum_to_one = ((clean_logits.sum(dim=1) - 1).abs() < 1e-3).all()
    if bool((clean_logits >= 0).all()) and bool(rows_sum_to_one):
        return [
            Flag(
                "probability_outputs",
                MASKING,
                "the model's outputs are probabilities (non-negative, rows sum to 1), not "
                "logits: cross-entropy on probabilities has vanishing gradients",
                "return logits (drop the final softmax), or pass output= a callable that "
                "returns them",
            )
        ]
    return []


def train_mode_flag(was_training: bool) -> list[Flag]:
    if not was_training:
        return []
    return [
        Flag(
            "train_mode",
            WARNING,
            "the model was handed over in train mode (dropout and batch-norm updates "
            "active); it was evaluated in eval mode, as it should be deployed",
            "call model.eval() in the model fixture, so that every user of it sees the "
            "deployed model",
        )
    ]


def determinism_flag(forward: Forward, x: torch.Tensor, clean_logits: torch.Tensor) -> list[Flag]:
    """Two forward passes in eval mode on the same inputs must agree."""
    if len(x) == 0:
        return []
    with torch.no_grad():
        again = forward(x).float().cpu()
    scale = clean_logits.abs().amax().clamp_min(1.0)
    if bool(((again - clean_logits).abs() <= 1e-4 * scale).all()):
        return []
    return [
        Flag(
            "nondeterministic",
            MASKING,
            "two forward passes on the same inputs gave different logits in eval mode: the "
            "model is randomised, so a single gradient sample misleads the attack",
            "attack the expectation over the randomness (EOT: average gradients over many "
            "forward passes), or make the model deterministic for evaluation",
        )
    ]


def gradient_loss(members: list[tuple[str, Attack]]) -> str | None:
    """The loss to check gradients of: 'ce' when every gradient member ascends
    cross-entropy, 'logits' when some member uses a logit loss, None without gradients."""
    losses = {attack.gradient_loss() for _, attack in members} - {None}
    if not losses:
        return None
    return "ce" if losses == {"ce"} else "logits"


def cheap_flags(
    forward: Forward,
    x: torch.Tensor,
    labels: torch.Tensor,
    clean_logits: torch.Tensor,
    members: list[tuple[str, Attack]],
    batch_size: int,
    nondeterminism: Callable[[list[Flag]], list[Flag]] | None = None,
) -> list[Flag]:
    """Flags from the model's outputs and input gradients on the samples `x` (already on
    the device), whose clean logits are `clean_logits`. `nondeterminism` replaces the
    two-forward comparison's flag (with EOT: the seeded probe's verdict)."""
    # Every flag looks at these samples only: none attacked, nothing to find (issue 11).
    if len(x) == 0:
        return []
    flags = probability_flag(clean_logits)
    first = slice(0, min(batch_size, len(x)))
    compared = determinism_flag(forward, x[first], clean_logits[first])
    flags += nondeterminism(compared) if nondeterminism is not None else compared
    loss = gradient_loss(members)
    if loss is not None:
        keep = slice(0, GRADIENT_SAMPLES)
        amps = gradients.amplitudes(
            forward, x[keep], labels[keep], batch_size, losses=("ce", "margin")
        )
        if amps is not None or loss == "ce":
            flags += gradients.flags_for(amps, loss)
    return flags


# The flags that say the gradient members' evidence is masked. A black-box member (Square)
# never reads the model's gradients, and its margin loss works on probabilities too.
GRADIENT_FLAGS = frozenset(
    {
        "no_gradient_path",
        "zero_gradients",
        "softmax_saturation",
        "nonfinite_gradients",
        "probability_outputs",
    }
)


def resting_on_black_box(
    flags: list[Flag], members: list[tuple[str, Attack]], skipped: list[str]
) -> list[Flag]:
    """The flags of a worst case over members, when some members are black-box.

    A black-box member attacks every sample the members before it left unbroken, so the
    worst case is at least as strong as that member alone, which is gated without any
    gradient flag. A flag that only says the gradient members' evidence is masked then
    becomes a warning that names them: the verdict rests on the black-box members' evidence.
    Every other flag (a randomised model, the full diagnosis) stays as it was. A gradient
    member skipped for want of a gradient path gets its flag here, whatever the sanity level.
    """
    black = [name for name, attack in members if attack.black_box]
    masked = [name for name, attack in members if attack.gradient_loss() is not None]
    if not black or not masked:
        return flags
    if skipped and not any(flag.name == "no_gradient_path" for flag in flags):
        flags = [
            *flags,
            Flag(
                "no_gradient_path",
                MASKING,
                "the model's output does not depend on its input through autograd, so "
                f"{', '.join(skipped)} could not run and {'was' if len(skipped) == 1 else 'were'}"
                " skipped",
                f"make forward() differentiable in x; {gradients.BPDA_FIX}",
            ),
        ]
    rest = (
        f"; the evidence of {', '.join(masked)} is masked, so this result rests on "
        f"{', '.join(black)} alone"
    )
    return [
        Flag(flag.name, WARNING, flag.message + rest, flag.fix)
        if flag.name in GRADIENT_FLAGS
        else flag
        for flag in flags
    ]


def black_box_share_flag(
    broken_by: Mapping[str, int],
    members: list[tuple[str, Attack]],
    evaluated: int,
    alpha: float,
) -> list[Flag]:
    """AutoAttack's check_square_sr, for a preset whose black-box members run after its
    gradient members: they must not break more than `alpha` of the samples evaluated, or
    the gradient members were misled there and the result rests on a query-limited search.
    The full diagnosis makes the same point by running Square on its own (diagnosis.py's
    _black_box_flags); here the members' own counts say it at no extra cost."""
    black = [name for name, attack in members if attack.black_box]
    white = [name for name, attack in members if attack.gradient_loss() is not None]
    broken = sum(broken_by.get(name, 0) for name in black)
    if not black or not white or evaluated == 0 or broken <= alpha * evaluated:
        return []
    return [
        Flag(
            "black_box_beats_white_box",
            MASKING,
            f"{', '.join(black)} broke {broken} of the {evaluated} samples "
            f"({broken / evaluated:.1%}) that {', '.join(white)} left robust, more than "
            f"{alpha:.1%} (AutoAttack's check_square_sr): the gradients mislead the white-box "
            "members there, so the result rests on a query-limited search",
            "the gradients are masked; measure with an adaptive attack (BPDA or EOT, "
            "docs/masking.md) or Square with more queries (attack='square', queries=20000), "
            "or accept the number with allow_masking=True",
        )
    ]
