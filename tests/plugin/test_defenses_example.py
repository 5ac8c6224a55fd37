"""The defences example suite (examples/defenses) runs green, so CI keeps its claims true.

The example's models are trained here first, outside the in-process run: pytester's run
then finds `defended_models` (and every torch module training imports lazily, e.g. the
optimiser's) already in sys.modules, so its cached models (trained once per session, shared
with tests/unit/test_defenses.py) are reused, and no torch module is imported inside the run
(pytester evicts those afterwards, and torch cannot be re-imported).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "defenses"
sys.path.insert(0, str(EXAMPLE))
import certified_models  # noqa: E402
import defended_models  # noqa: E402
import randomised_models  # noqa: E402


@pytest.fixture(scope="module")
def trained_models() -> None:
    """Module-scoped, so it is set up before pytester takes its sys.modules snapshot."""
    defended_models.standard_model()
    defended_models.adversarial_model()
    defended_models.distilled_model()
    randomised_models.noisy_cnn()
    randomised_models.quantised_cnn()
    certified_models.ibp_mlp()
    certified_models.noise_cnn()
    certified_models.held_out_mlp()
    certified_models.ensemble_mlp()


@pytest.mark.usefixtures("trained_models")
def test_defenses_example_suite_passes(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess(str(EXAMPLE), "-p", "no:cacheprovider", "-rA")
    outcomes = result.parseoutcomes()
    assert result.ret == 0, result.stdout.str()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("errors", 0) == 0
    assert outcomes["passed"] == 20
    # The standard model misses the PGD gate; the distilled model fails the gradient check
    # and its passing PGD gate is refused as not trustworthy, as are the plain PGD gates on
    # the noisy and the quantised CNN (test_randomised_defenses.py); the undefended models
    # miss the certified and the transfer gates (test_certified.py).
    assert outcomes["xfailed"] == 7
    result.stdout.fnmatch_lines(
        [
            "PASSED *test_false_claim_ce_pgd_reports_distilled_model_robust*",
            "PASSED *test_apgd_dlr_breaks_the_distilled_model*",
            "PASSED *test_cw_breaks_the_distilled_model*",
            "PASSED *test_masking_diagnosis_contradicts_the_claim*",
            "PASSED *test_adversarial_training_passes_the_masking_diagnosis*",
            "XFAIL *test_a_pgd_gate_on_the_distilled_model_is_not_trusted*",
        ],
        consecutive=False,
    )
    result.stdout.fnmatch_lines(
        [
            "PASSED *test_eot_pgd_measures_the_noisy_model*",
            "PASSED *test_bpda_pgd_measures_the_quantised_model*",
            "XFAIL *test_a_pgd_gate_on_the_noisy_model_is_not_trusted*",
            "XFAIL *test_a_pgd_gate_on_the_quantised_model_is_not_trusted*",
        ],
        consecutive=False,
    )
