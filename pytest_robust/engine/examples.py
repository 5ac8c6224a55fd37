"""The few most confidently fooled samples of a check, kept for the HTML report's pictures.

Chosen from the re-verification pass's logits (no extra forward pass), a running top-k over
the batches, so memory stays at k samples whatever the data size. `encode` turns them into
plain builtins (uint8 pixels as base64, or short float lists) small enough to travel on a
pytest report to the xdist controller.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from dataclasses import replace
from typing import Any

import torch

# Above this many pixels per channel an image is downscaled for display (area average).
MAX_PIXELS = 96 * 96
# Vectors longer than this are shown by their first MAX_FEATURES features.
MAX_FEATURES = 512


@dataclass(frozen=True)
class Example:
    """One successful adversarial input: sample `index` in data order, CPU tensors.

    For a targeted check, `target` is the sample's target class; `missed_target` marks an
    input the attack pushed to a wrong class that is not its target (misclassified, so
    not robust, but no success), shown when the attack reached fewer targets than asked
    for."""

    index: int
    clean: torch.Tensor
    adversarial: torch.Tensor
    label: int
    prediction: int  # the model's class on the adversarial input
    confidence: float  # softmax probability of `prediction` on the adversarial input
    clean_prediction: int = -1
    clean_confidence: float = float("nan")
    target: int = -1
    missed_target: bool = False


class TopExamples:
    """Running selection of the k successes with the highest adversarial confidence.

    Ties go to the lower sample index, so the choice does not depend on batch order.
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self.kept: list[Example] = []

    def offer(
        self,
        ids: torch.Tensor,
        clean: torch.Tensor,
        adversarial: torch.Tensor,
        labels: torch.Tensor,
        predictions: torch.Tensor,
        confidences: torch.Tensor,
        hit: torch.Tensor,
        targets: torch.Tensor | None = None,
        missed_target: bool = False,
    ) -> None:
        """Consider the `hit` samples of one batch (all tensors indexed like the batch).
        A sample already kept is kept once, with its more confident input."""
        if self.k <= 0 or not bool(hit.any()):
            return
        rows = hit.nonzero().squeeze(1)
        # Only the batch's own k best can enter (stable sort: ties keep data order).
        order = torch.sort(confidences[rows].float().cpu(), descending=True, stable=True).indices
        rows_list = rows[order[: self.k]].tolist()
        floor = self._floor()
        for row in rows_list:
            key = (float(confidences[row]), -int(ids[row]))
            if len(self.kept) >= self.k and key <= floor:
                continue
            index = int(ids[row])
            before = [e for e in self.kept if e.index == index]
            if before and before[0].confidence >= key[0]:
                continue
            self.drop([index])
            self.kept.append(
                Example(
                    index=int(ids[row]),
                    clean=clean[row].detach().cpu().clone(),
                    adversarial=adversarial[row].detach().cpu().clone(),
                    label=int(labels[row]),
                    prediction=int(predictions[row]),
                    confidence=float(confidences[row]),
                    target=int(targets[row]) if targets is not None else -1,
                    missed_target=missed_target,
                )
            )
            self.kept.sort(key=lambda e: (-e.confidence, e.index))
            del self.kept[self.k :]
            floor = self._floor()

    def drop(self, indices: list[int]) -> None:
        """Forget these samples (a missed target that a later attack reached)."""
        gone = set(indices)
        self.kept = [e for e in self.kept if e.index not in gone]

    def _floor(self) -> tuple[float, int]:
        if len(self.kept) < self.k:
            return (float("-inf"), 0)
        last = self.kept[-1]
        return (last.confidence, -last.index)

    def with_clean(self, clean_logits: torch.Tensor) -> list[Example]:
        """The kept examples, most confident first, with their clean prediction added."""
        out = []
        for e in self.kept:
            probs = clean_logits[e.index].float().softmax(dim=0)
            pred = int(probs.argmax())
            out.append(replace(e, clean_prediction=pred, clean_confidence=float(probs[pred])))
        return out


def encode(examples: list[Example], bounds: tuple[float, float]) -> dict[str, Any]:
    """Plain builtins for a report: images as base64 uint8 (C, H, W), vectors as floats."""
    shape = tuple(examples[0].clean.shape) if examples else (0,)
    image = len(shape) == 3 and shape[0] in (1, 3)
    items = []
    for e in examples:
        clean = e.clean.double()
        delta = e.adversarial.double() - clean
        item: dict[str, Any] = {
            "index": e.index,
            "label": e.label,
            "prediction": e.prediction,
            "confidence": round(e.confidence, 4),
            "clean_prediction": e.clean_prediction,
            "clean_confidence": round(e.clean_confidence, 4),
            "target": e.target,
            "missed_target": e.missed_target,
            "max_abs_perturbation": float(delta.abs().max()) if delta.numel() else 0.0,
        }
        if image:
            item.update(_image(clean, e.adversarial.double(), bounds))
        else:
            item["clean"] = _floats(clean)
            item["adversarial"] = _floats(e.adversarial.double())
        items.append(item)
    if image:
        height, width = _display_size(shape[1], shape[2])
        kind, size = "image", [shape[0], height, width]
    else:
        kind, size = "vector", [min(int(torch.Size(shape).numel()), MAX_FEATURES)]
    return {"kind": kind, "shape": size, "bounds": list(bounds), "items": items}


def _display_size(height: int, width: int) -> tuple[int, int]:
    factor = max(1.0, (height * width / MAX_PIXELS) ** 0.5)
    return max(1, int(height / factor)), max(1, int(width / factor))


def _image(clean: torch.Tensor, adversarial: torch.Tensor, bounds: tuple[float, float]) -> Any:
    low, high = bounds
    size = _display_size(clean.shape[1], clean.shape[2])
    if size != tuple(clean.shape[1:]):
        pool = torch.nn.functional.adaptive_avg_pool2d
        clean, adversarial = pool(clean[None], size)[0], pool(adversarial[None], size)[0]
    span = (high - low) or 1.0

    def pixels(x: torch.Tensor) -> str:
        scaled = ((x - low) / span).clamp(0, 1) * 255
        return base64.b64encode(scaled.round().to(torch.uint8).numpy().tobytes()).decode()

    # The perturbation, stretched so its largest component reaches black or white (grey = 0).
    delta = adversarial - clean
    peak = float(delta.abs().max()) or 1.0
    stretched = (127.5 + 127.5 * delta / peak).clamp(0, 255).round().to(torch.uint8)
    return {
        "clean": pixels(clean),
        "adversarial": pixels(adversarial),
        "perturbation": base64.b64encode(stretched.numpy().tobytes()).decode(),
        # Display gain: a change of `peak` spans half the pixel range.
        "amplification": round(span / 2 / peak, 3),
    }


def _floats(x: torch.Tensor) -> list[float]:
    return [round(float(v), 5) for v in x.flatten()[:MAX_FEATURES].tolist()]
