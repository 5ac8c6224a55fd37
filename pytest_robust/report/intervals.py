"""Robust accuracy as an interval [certified, attacked]: pairs of records that measured
the same model, data, norm and eps with a certificate (a proven lower bound) and with an
attack (an upper bound: what the attack failed to break). Pure functions over records.

Per sample, a sample is robust for sure when any certificate proves it (the lower end
counts the union of the certificates' flags) and possibly robust only while no attack
broke it (the upper end counts the intersection of the attacks' robust flags). The
width, upper - lower, is how much the evaluation leaves open. A sample certified by one
test and broken by another is impossible for a sound certificate of the same function:
it is reported as a contradiction, never averaged away.

Only deterministic certificates of the model itself pair (ibp, crown). Randomized
smoothing certifies a different classifier (the smoothed one), so it is never the lower
end of an attack on the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

# Certificates that bound the model's own function (not a smoothed classifier).
MODEL_CERTIFICATES = ("ibp", "crown")
# The sample indices a contradiction lists at most (the count is always given).
LISTED = 20

Record = Mapping[str, Any]
Family = tuple[str, str, str, tuple[float, ...], int]


def is_certificate(record: Record) -> bool:
    """A proven lower bound on the model's own robust accuracy."""
    details = record.get("details") or {}
    return (
        record.get("check") == "certify"
        and details.get("bound") == "certified"
        and details.get("method") in MODEL_CERTIFICATES
        and details.get("classifier", "model") == "model"
        and record.get("eps") is not None
    )


def is_attack(record: Record) -> bool:
    """An eps-ball attack on the model itself over every sample: its robust flags are an
    upper bound (targeted or not, masked or not: a broken sample is broken). Not a
    decided-early prefix, not an attack through an output= adapter (another classifier)."""
    details = record.get("details") or {}
    return (
        record.get("check") is None
        and record.get("eps") is not None
        and not details.get("decided_early")
        and "output" not in (record.get("params") or {})
    )


def family(record: Record) -> Family:
    """What must agree besides eps: the model (its weights' fingerprint and its module
    tree), the data, the norm, the input bounds and the sample count."""
    model = f"{record['model_fingerprint']}/{record.get('model_structure')}"
    bounds = tuple(float(b) for b in record["bounds"])
    return (model, str(record["data_fingerprint"]), str(record["norm"]), bounds, int(record["n"]))


def _union(flags: Sequence[str]) -> list[bool]:
    return [any(f[i] == "1" for f in flags) for i in range(len(flags[0]))]


def _intersection(flags: Sequence[str]) -> list[bool]:
    return [all(f[i] == "1" for f in flags) for i in range(len(flags[0]))]


def _named(record: Record, value: float) -> dict[str, Any]:
    return {"nodeid": record.get("nodeid", ""), "attack": record["attack"], "acc": value}


def _contradictions(
    certificates: Sequence[Record], attacks: Sequence[Record]
) -> list[dict[str, Any]]:
    """Each (certificate, attack) pair with samples the first proves and the second broke
    (or that were not even clean-correct for the attack)."""
    out = []
    for cert in certificates:
        for attack in attacks:
            samples = [
                i
                for i, (c, r) in enumerate(zip(cert["robust"], attack["robust"], strict=True))
                if c == "1" and r == "0"
            ]
            if samples:
                out.append(
                    {
                        "certificate": _named(cert, float(cert["robust_acc"])),
                        "attack": _named(attack, float(attack["robust_acc"])),
                        "count": len(samples),
                        "samples": samples[:LISTED],
                    }
                )
    return out


def intervals(records: Sequence[Record]) -> list[dict[str, Any]]:
    """One JSON-safe interval per (family, eps) measured both ways, in the order the
    families first appear and by eps within one."""
    groups: dict[Family, dict[float, tuple[list[Record], list[Record]]]] = {}
    for record in records:
        kind = 0 if is_certificate(record) else 1 if is_attack(record) else None
        if kind is None or not record.get("robust"):
            continue
        eps = float(record["eps"])
        groups.setdefault(family(record), {}).setdefault(eps, ([], []))[kind].append(record)
    out = []
    for key, by_eps in groups.items():
        for eps in sorted(by_eps):
            certificates, attacks = by_eps[eps]
            if not certificates or not attacks:
                continue
            n = key[4]
            lower = sum(_union([r["robust"] for r in certificates])) / n
            upper = sum(_intersection([r["robust"] for r in attacks])) / n
            out.append(
                {
                    "model_fingerprint": certificates[0]["model_fingerprint"],
                    "model_structure": certificates[0].get("model_structure"),
                    "data_fingerprint": key[1],
                    "norm": key[2],
                    "bounds": list(key[3]),
                    "n": n,
                    "eps": eps,
                    "certified": lower,
                    "attacked": upper,
                    "width": upper - lower,
                    "certificates": [_named(r, float(r["robust_acc"])) for r in certificates],
                    "attacks": [_named(r, float(r["robust_acc"])) for r in attacks],
                    "contradictions": _contradictions(certificates, attacks),
                }
            )
    return out


def curves(records: Sequence[Record]) -> list[dict[str, Any]]:
    """For each family with at least one interval: both bounds against eps, each at every
    eps it was measured (certified: union over certificates; attacked: intersection over
    attacks), for the HTML report's picture."""
    paired = {family_of_interval(i) for i in intervals(records)}
    by_family: dict[Family, dict[str, dict[float, list[Record]]]] = {}
    for record in records:
        kind = "certified" if is_certificate(record) else "attacked" if is_attack(record) else None
        key = family(record) if kind and record.get("robust") else None
        if key is None or key not in paired:
            continue
        side = by_family.setdefault(key, {"certified": {}, "attacked": {}})[str(kind)]
        side.setdefault(float(record["eps"]), []).append(record)
    out = []
    for key, sides in by_family.items():
        n = key[4]
        combine = {"certified": _union, "attacked": _intersection}
        points = {
            side: [
                (eps, sum(combine[side]([r["robust"] for r in mine])) / n)
                for eps, mine in sorted(sides[side].items())
            ]
            for side in ("certified", "attacked")
        }
        names = {
            side: sorted({r["attack"] for mine in sides[side].values() for r in mine})
            for side in ("certified", "attacked")
        }
        first = next(iter(sides["certified"].values()))[0]
        out.append(
            {
                "model_fingerprint": first["model_fingerprint"],
                "norm": key[2],
                "n": n,
                "certified": points["certified"],
                "attacked": points["attacked"],
                "certified_by": names["certified"],
                "attacked_by": names["attacked"],
            }
        )
    return out


def family_of_interval(interval: Mapping[str, Any]) -> Family:
    """The family an interval (from `intervals`) belongs to."""
    record = {
        "model_structure": interval.get("model_structure"),
        "model_fingerprint": interval["model_fingerprint"],
        "data_fingerprint": interval["data_fingerprint"],
        "norm": interval["norm"],
        "bounds": interval["bounds"],
        "n": interval["n"],
    }
    return family(record)


def model_text(interval: Mapping[str, Any]) -> str:
    """A short name for the model: its weights' fingerprint's first 8 characters."""
    return str(interval["model_fingerprint"])[:8]


def contradiction_text(item: Mapping[str, Any], eps: float, names: Mapping[str, str]) -> str:
    """The soundness note of one contradiction; `names` maps node ids to display names."""
    cert, attack = item["certificate"], item["attack"]
    listed = ", ".join(str(i) for i in item["samples"])
    more = (
        f" and {item['count'] - len(item['samples'])} more"
        if item["count"] > len(item["samples"])
        else ""
    )
    return (
        f"soundness: {cert['attack']} ({names.get(cert['nodeid'], cert['nodeid'])}) certified "
        f"{item['count']} sample(s) at eps={eps:g} that {attack['attack']} "
        f"({names.get(attack['nodeid'], attack['nodeid'])}) broke or found misclassified: "
        f"sample {listed}{more}. A sound certificate of the same function cannot be broken: "
        "this is a bug in the certificate (or the two tests did not evaluate the same "
        "function, e.g. a different device's rounding at a margin near 0); please report it"
    )
