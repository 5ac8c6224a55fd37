"""The measuring step of check="certify", method="smoothing": CERTIFY (checks/smoothing.py)
for every sample, after the clean pass of the base model.

What is certified is the smoothed classifier (the base model's majority vote under
Gaussian noise), not the base model: `clean_correct` is the smoothed prediction being
correct (the radius-0 accuracy), `robust` that it is correct and certified at radius >= eps.
The base model's own clean accuracy is kept in the details.
"""

from __future__ import annotations

import torch

from pytest_robust.checks import smoothing
from pytest_robust.engine.measure import Inputs
from pytest_robust.engine.measure import Measured
from pytest_robust.engine.prepare import Prepared

BLOCK = 256  # samples whose inputs are on the device at once


def measure_smoothing(run: Prepared, given: Inputs) -> Measured:
    spec, samples = run.spec, run.samples
    assert spec.eps is not None  # validation requires eps for check="certify"
    params = spec.attack_params
    sigma, n0, n, alpha = params["sigma"], params["n0"], params["n"], params["alpha"]
    smoothing.scipy_stats()  # the install hint before any forward pass

    def certify_all(batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels, radii = [], []
        for start in range(0, len(samples), BLOCK):
            ids = torch.arange(start, min(start + BLOCK, len(samples)))
            label, radius, _ = smoothing.certify(
                given.forward,
                samples.inputs(ids, run.device, given.dtype),
                ids.tolist(),  # the sample's place in the data seeds its noise
                sigma=sigma,
                n0=n0,
                n=n,
                alpha=alpha,
                seed=spec.seed,
                batch_size=batch_size,
            )
            labels.append(label)
            radii.append(radius)
        return torch.cat(labels), torch.cat(radii)

    # A batch that does not fit is retried smaller: the noise does not depend on it.
    predicted, radii = given.backoff.retry(certify_all)
    labels = samples.y.cpu()
    correct = predicted == labels
    certified = correct & (radii >= spec.eps)
    shown = torch.where(correct, radii, 0.0)
    details = {
        "bound": "certified",
        "method": "smoothing",
        # Not the model: its majority vote under N(0, sigma^2) noise (pytest_robust.Smoothed).
        "classifier": "smoothed",
        "base_clean_acc": float((given.clean_logits.argmax(dim=1) == labels).float().mean()),
        "abstained": int((predicted == smoothing.ABSTAIN).sum()),
        # Per sample: the certified L2 radius of the correct smoothed prediction (0 where
        # it abstained or predicted another class), and the smoothed prediction (-1: abstain).
        "radii": [float(f"{r:.4g}") for r in shown.tolist()],
        "predictions": predicted.tolist(),
        "largest_radius": smoothing.largest_radius(sigma, n, alpha),
        "forward_passes": {"per_sample": n0 + n},
        **given.backoff.details(),
    }
    no_success = torch.zeros_like(correct)
    return Measured(correct, certified, no_success, correct, None, None, [], [], details)
