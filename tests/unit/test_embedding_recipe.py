"""The embedding-space recipe of docs/attacks.md, run as written, and the token-id error
that points to it.

The recipe's toy model is a mean bag of embeddings followed by a linear layer, so its
worst case under an L-inf ball intersected with the bounds is known in closed form: move
every coordinate of every token by eps against the class margin, clipped to the bounds.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch

from pytest_robust import RobustConfigError
from pytest_robust import evaluate

DOCS = Path(__file__).resolve().parents[2] / "docs" / "attacks.md"
HEADING = "Text models: attack the embedding space"


def _recipe(block: int = 0) -> dict[str, Any]:
    """Run the section's code block `block` (0: the wrapper recipe, 1: inputs_embeds=)."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split(f"## {HEADING}\n", 1)[1].split("\n## ", 1)[0]
    code = re.findall(r"```python\n(.*?)```", section, flags=re.S)[block]
    namespace: dict[str, Any] = {"__name__": "docs_recipe"}
    exec(compile(code, str(DOCS), "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def recipe() -> dict[str, Any]:
    return _recipe()


def test_the_wrapper_computes_the_text_models_logits(recipe: dict[str, Any]) -> None:
    """Catches a recipe whose embedding model is not the text model after its lookup (the
    check would then measure some other model)."""
    model, tokens = recipe["text_model"], recipe["tokens"]
    with torch.no_grad():
        direct = model(tokens)
        via_embeddings = recipe["model_from_embeddings"](model)(recipe["embed"](model, tokens))
    torch.testing.assert_close(via_embeddings, direct)


def test_the_recipes_result_is_the_closed_form_worst_case(recipe: dict[str, Any]) -> None:
    """Catches docs whose numbers an attack on the embeddings does not reach: PGD's robust
    samples must be exactly those that survive the optimal perturbation."""
    model, tokens, labels = recipe["text_model"], recipe["tokens"], recipe["labels"]
    result, (low, high) = recipe["result"], recipe["embedding_bounds"](model)
    eps = 0.3
    assert result.eps == eps and result.bounds == (low, high)
    embedded = recipe["embed"](model, tokens)
    weight = model.head.weight.detach()
    with torch.no_grad():
        correct = model(tokens).argmax(1) == labels
        # The margin (true class minus other) falls fastest along -sign(w_true - w_other).
        toward = weight[labels] - weight[1 - labels]  # (N, dim)
        worst = (embedded - eps * toward.sign()[:, None, :]).clamp(low, high)
        survives = recipe["model_from_embeddings"](model)(worst).argmax(1) == labels
    expected = "".join("1" if c and s else "0" for c, s in zip(correct, survives, strict=True))
    assert result.robust == expected
    assert 0 < result.robust_acc < result.clean_acc  # the budget matters on this toy model
    assert f"robust_acc={result.robust_acc:.3f}" in DOCS.read_text(encoding="utf-8")


def test_token_ids_point_to_the_recipe_not_to_image_scaling(recipe: dict[str, Any]) -> None:
    """Catches the image hint (x.float() / 255) as the advice for token ids."""
    model, tokens, labels = recipe["text_model"], recipe["tokens"], recipe["labels"]
    with pytest.raises(RobustConfigError) as error:
        evaluate(model, (tokens, labels), attack="pgd", eps=0.1)
    message = str(error.value)
    assert "need floating-point inputs" in message
    assert message.index(HEADING) < message.index("x.float() / 255")
    assert f"'{HEADING}' in docs/attacks.md" in message
    # 8-bit images still lead with their own fix.
    images = torch.randint(0, 256, (4, 1, 2, 2), dtype=torch.uint8)
    with pytest.raises(RobustConfigError, match=r"floating-point inputs.*: for 8-bit images"):
        evaluate(model, (images, labels[:4]), attack="pgd", eps=0.1)


def test_the_inputs_embeds_recipe_is_its_closed_form_worst_case() -> None:
    """The Hugging Face recipe (dict batch, model(inputs_embeds=x), .logits, per-coordinate
    bounds): PGD's robust samples are exactly those that survive the optimal perturbation,
    each coordinate clipped to its own bounds, and the docs show the number it gives."""
    recipe = _recipe(1)
    model, input_ids, labels = recipe["model"], recipe["input_ids"], recipe["labels"]
    result, table = recipe["result"], recipe["table"]
    low, high = table.amin(dim=0), table.amax(dim=0)
    embedded = table[input_ids]
    weight = model.head.weight.detach()
    with torch.no_grad():
        correct = model(input_ids=input_ids).logits.argmax(1) == labels
        toward = weight[labels] - weight[1 - labels]
        worst = torch.maximum(torch.minimum(embedded - 0.3 * toward.sign()[:, None, :], high), low)
        survives = model(inputs_embeds=worst).logits.argmax(1) == labels
    expected = "".join("1" if c and s else "0" for c, s in zip(correct, survives, strict=True))
    assert result.robust == expected
    assert 0 < result.robust_acc < result.clean_acc
    assert f"robust_acc={result.robust_acc:.3f}" in DOCS.read_text(encoding="utf-8")
