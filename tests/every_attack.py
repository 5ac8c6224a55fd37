"""Arguments that run any registered attack quickly, for the property tests that run every
attack (test_attack_properties.py, test_masked_features.py, test_feature_bounds.py): one
place to teach them a new kind of attack."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from pytest_robust.attacks import registered_attacks

# Small budgets for whichever of these parameters an attack declares, to keep them fast.
QUICK = {"steps": 3, "queries": 20, "samples": 4, "search_steps": 2, "restarts": 1}
# Attacks that are not eps-ball attacks take their own ranges instead of eps.
OWN_RANGES: dict[str, dict[str, Any]] = {
    "transform": {"brightness": 0.3, "contrast": 0.3, "noise": 0.3, "budget": 4},
    "noise": {"sigma": 0.3, "draws": 2, "budget": 4},
}


def quick_arguments(
    attack: str,
    model: torch.nn.Module,
    eps: float,
    norm_choice: int,
    own_ranges: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """evaluate()'s arguments for `attack`: its QUICK settings; for a delegating attack
    (transfer) the model itself as the surrogate, with a quick pgd; for an eps-ball attack
    `eps` and one of its norms (`norm_choice` modulo how many it supports); for any other,
    `own_ranges` (default: OWN_RANGES[attack]), each only where the attack takes it."""
    schema = registered_attacks()[attack]
    extra: dict[str, Any] = {k: v for k, v in QUICK.items() if k in schema.params}
    if schema.delegate is not None:
        extra.update(surrogate=model, steps=3)
    if schema.eps_ball:
        extra.update(eps=eps, norm=schema.norms[norm_choice % len(schema.norms)])
    else:
        ranges = OWN_RANGES[attack] if own_ranges is None else own_ranges
        extra.update({k: v for k, v in ranges.items() if k in schema.params})
    return extra
