"""Profiles (--robust-profile / ini robust_profile, user profiles in ini robust_profiles):
marker > command line > ini > profile > default, with provenance 'profile NAME'; an
attack parameter reaches only the attacks that declare it; bad profiles are usage errors
that name the profile and the key; the default profile changes nothing.

The world (conftest.py) has 64 samples, so a sample count is checked with a user profile
whose max_samples is below 64; the built-ins' larger caps are checked by provenance.
"""

from __future__ import annotations

import json

import pytest

NIGHTLY = "robust_profiles =\n    nightly: max_samples=10 steps=3 queries=50\n"


def run(
    rtester: pytest.Pytester, ini: str, cli: list[str], marker: str, body: str
) -> pytest.RunResult:
    rtester.makeini(f"[pytest]\n{ini}\n")
    rtester.makepyfile(
        f"""
        from pytest_robust import robust

        @robust({marker})
        def test_profiled(robustness):
            p, src = robustness.params, robustness.provenance
            {body}
        """
    )
    return rtester.runpytest(*cli)


@pytest.mark.parametrize(
    ("profile", "marker", "body"),
    [
        (
            "quick",
            "attack='pgd', eps=0.1",
            "assert (p['steps'], src['steps']) == (10, 'profile quick')\n"
            "            assert src['max_samples'] == 'profile quick'\n"
            "            assert (p['restarts'], src['restarts']) == (1, 'default')\n"
            "            assert src['sanity'] == 'default'",
        ),
        (
            "quick",
            "attack='square', eps=0.1",
            "assert (p['queries'], src['queries']) == (200, 'profile quick')\n"
            "            assert 'steps' not in p and 'steps' not in src",
        ),
        (
            "thorough",
            "attack='pgd', eps=0.1",
            "assert (p['restarts'], src['restarts']) == (3, 'profile thorough')\n"
            "            assert (p['steps'], src['steps']) == (20, 'default')\n"
            "            assert src['sanity'] == 'profile thorough'\n"
            "            assert src['max_samples'] == 'default'",
        ),
        # eps 0.3 breaks every sample within a few queries, and the marker's sanity keeps
        # the full diagnosis (square at 5 eps x 5000 queries, ~8 s) out: the case is about
        # queries, and thorough's sanity is checked by the pgd case.
        (
            "thorough",
            "attack='square', eps=0.3, sanity='cheap'",
            "assert (p['queries'], src['queries']) == (5000, 'profile thorough')\n"
            "            assert 'restarts' not in p",
        ),
    ],
    ids=["quick-pgd", "quick-square", "thorough-pgd", "thorough-square"],
)
def test_builtin_profiles_set_their_values(
    rtester: pytest.Pytester, profile: str, marker: str, body: str
) -> None:
    """Catches a built-in profile that sets nothing, a parameter pushed onto an attack that
    does not declare it (steps on square), and a provenance that does not name the profile."""
    run(rtester, "", [f"--robust-profile={profile}"], marker, body).assert_outcomes(passed=1)


def test_quick_takes_fewer_forward_passes_than_default(rtester: pytest.Pytester) -> None:
    """Catches a profile that is labelled but not applied: pgd's 10 steps under quick are
    counted in the model's forward passes."""
    body = "print('PASSES', len(robust_model.seen))"
    rtester.makepyfile(
        f"""
        from pytest_robust import robust

        @robust(attack='pgd', eps=0.1, sanity='off')
        def test_count(robustness, robust_model):
            {body}
        """
    )
    passes = {}
    for cli in ([], ["--robust-profile=quick"]):
        result = rtester.runpytest("-s", "-p", "no:cacheprovider", *cli)
        result.assert_outcomes(passed=1)
        line = next(ln for ln in result.outlines if "PASSES " in ln)
        passes[bool(cli)] = int(line.split("PASSES ")[1].split()[0])
    assert passes[True] < passes[False], passes


def test_marker_argument_wins_over_the_profile(rtester: pytest.Pytester) -> None:
    """Catches a profile that overrides what the marker wrote, or caps its max_samples."""
    body = (
        "assert (p['steps'], src['steps']) == (5, 'marker')\n"
        "            assert len(robustness.robust) == 32, len(robustness.robust)\n"
        "            assert src['max_samples'] == 'marker'"
    )
    marker = "attack='pgd', eps=0.1, steps=5, max_samples=32"
    run(rtester, NIGHTLY, ["--robust-profile=nightly"], marker, body).assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("ini", "cli", "n", "source"),
    [
        ("", [], 10, "profile nightly"),
        ("", ["--robust-max-samples=16"], 16, "--robust-max-samples"),
        ("robust_max_samples = 20", [], 20, "ini robust_max_samples"),
    ],
    ids=["profile", "cli-over-profile", "ini-over-profile"],
)
def test_options_and_ini_win_over_the_profile(
    rtester: pytest.Pytester, ini: str, cli: list[str], n: int, source: str
) -> None:
    """Catches a profile that beats an explicit option or ini key: the samples actually
    evaluated are counted, not only the label."""
    body = (
        f"assert len(robustness.robust) == {n}, len(robustness.robust)\n"
        f"            assert src['max_samples'] == {source!r}"
    )
    result = run(
        rtester, NIGHTLY + ini, ["--robust-profile=nightly", *cli], "attack='fgsm', eps=0.1", body
    )
    result.assert_outcomes(passed=1)


def test_user_profile_from_ini_and_named_in_the_summary(rtester: pytest.Pytester) -> None:
    """Catches ini robust_profile not choosing a user profile, its attack parameters not
    applied, and a summary line that does not name the profile."""
    body = (
        "assert (p['steps'], src['steps']) == (3, 'profile nightly')\n"
        "            assert len(robustness.robust) == 10"
    )
    ini = NIGHTLY + "robust_profile = nightly\n"
    result = run(rtester, ini, [], "attack='pgd', eps=0.1", body)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*(profile=nightly device=auto seed=0 max_samples=10 *"])


def test_no_profile_leaves_the_summary_line_as_it_was(rtester: pytest.Pytester) -> None:
    """Catches a profile word added to the summary of runs that chose none."""
    result = run(rtester, "", [], "attack='fgsm', eps=0.1", "pass")
    result.stdout.fnmatch_lines(["*(device=auto seed=0 max_samples=None *"])
    result.stdout.no_fnmatch_line("*profile=*")


@pytest.mark.parametrize(
    ("ini", "cli", "message"),
    [
        ("", ["--robust-profile=nightly"], "*--robust-profile: unknown profile 'nightly': "
         "the known profiles are quick, default, thorough"),
        ("robust_profile = fast", [], "*ini robust_profile: unknown profile 'fast'*"),
        ("robust_profiles = nightly max_samples=10", [], "*'nightly max_samples=10' is not a "
         "profile: write one per line as 'NAME: key=value*"),
        ("robust_profiles = quick: max_samples=10", [], "*profile 'quick' is a built-in*"),
        ("robust_profiles = n: steps=0", [],
         "*steps='0' (ini robust_profiles, profile 'n'): must be >= 1*"),
        ("robust_profiles = n: sanity=most", [],
         "*sanity='most' (ini robust_profiles, profile 'n'): must be one of*"),
        ("robust_profiles = n: eps=0.1", [],
         "*profile 'n': 'eps' cannot be set by a profile; a profile sets max_samples, *"),
        ("robust_profiles = n: device=cuda", [], "*profile 'n': 'device' cannot be set*"),
        ("robust_profiles = n: stepz=3", [], "*profile 'n': 'stepz' cannot be set*steps*"),
        ("robust_profiles = n: surrogate=other", [], "*profile 'n': 'surrogate' cannot be set*"),
        ("robust_profiles = n: via=fgsm", [], "*profile 'n': 'via' cannot be set*"),
        ("robust_profiles = n: steps =3", [], "*profile 'n': 'steps' is not key=value*"),
        ("robust_profiles =\n    n: steps=3\n    n: steps=4", [], "*profile 'n' is defined twice*"),
    ],
    ids=["unknown-cli", "unknown-ini", "no-colon", "builtin-name", "bad-int", "bad-choice",
         "eps", "device", "unknown-key", "surrogate", "via", "spaced", "twice"],
)  # fmt: skip
def test_bad_profiles_are_usage_errors(
    rtester: pytest.Pytester, ini: str, cli: list[str], message: str
) -> None:
    """Catches a bad profile that runs anyway, or an error that names neither the profile
    nor the key; a defined but unchosen profile is checked too."""
    rtester.makeini(f"[pytest]\n{ini}\n")
    rtester.makepyfile("def test_plain():\n    pass\n")
    result = rtester.runpytest(*cli)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    result.stderr.fnmatch_lines([message])


def test_default_profile_is_no_profile(rtester: pytest.Pytester) -> None:
    """Catches a 'default' profile that changes any value, label or per-sample outcome."""
    body = (
        "import json, pathlib\n"
        "            pathlib.Path('out.json').write_text(json.dumps([robustness.robust, "
        "robustness.success, dict(p), dict(src), robustness.seed], default=str))"
    )
    outs = []
    for cli in ([], ["--robust-profile=default"]):
        run(rtester, "", cli, "attack='pgd', eps=0.1, restarts=2", body).assert_outcomes(passed=1)
        outs.append(json.loads((rtester.path / "out.json").read_text()))
    assert outs[0] == outs[1]


def test_thorough_restarts_meet_a_deterministic_pgd_as_an_error(rtester: pytest.Pytester) -> None:
    """Catches the documented interaction silently changing: restarts=3 from the profile on
    a marker's random_start=False pgd is the same clear error as on the marker."""
    result = run(
        rtester, "", ["--robust-profile=thorough"], "attack='pgd', eps=0.1, random_start=False",
        "pass",
    )  # fmt: skip
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*restarts=3 with random_start=False repeats the same*"])
