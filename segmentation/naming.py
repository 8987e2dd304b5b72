"""Unique, readable segment names, and how names changed since the previous model.

Each cluster's base name comes from the definitions table (``definitions.name_for``). When
several clusters earn the same base name, a qualifier tells them apart in words a marketer
reads, chosen in this order, the first that gives every cluster a different word:

1. the recency band ("— lapsing", "— lapsed");
2. what most of them are ("— one-time buyers", "— repeat buyers", "— frequent buyers");
3. either of those with the spend level of the typical customer, when they differ in it
   ("— repeat buyers, high spend", "— one-time buyers, low spend"); then spend alone
   ("— high spend", "— mid spend", "— low spend");
4. comparisons on the dimension where they differ most, measured against the shop's spread
   ("— higher spend", "— lower spend"; "— most recent" … "— longest ago"), up to five clusters;
5. their typical values on the two dimensions where they differ most, with units
   ("— typically 207 days since the last order, spend R$640").

Every word is true of the typical (median) customer of its cluster.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from .segments import NameChanges, plural
from .terms import Band, Freq, ShopTerms, Spend


@dataclass(frozen=True)
class Candidate:
    """What naming needs to know about one cluster."""

    cluster: int
    base: str
    band: Band
    freq: Freq  # of its median customer (by purchase days)
    spend: Spend  # of its median customer
    medians: tuple[float, float, float]  # recency days, purchase days, money
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)  # in the model's standardised space


_COMPARATIVE = {
    2: ("lower", "higher"),
    3: ("lowest", "middle", "highest"),
    4: ("lowest", "lower", "higher", "highest"),
    5: ("lowest", "lower", "middle", "higher", "highest"),
}
_RECENCY_COMPARATIVE = {
    2: ("more recent", "longer ago"),
    3: ("most recent", "in between", "longest ago"),
    4: ("most recent", "more recent", "longer ago", "longest ago"),
    5: ("most recent", "more recent", "in between", "longer ago", "longest ago"),
}


def qualified_names(cands: Sequence[Candidate], terms: ShopTerms) -> dict[int, str]:
    """cluster → unique display name."""
    groups: dict[str, list[Candidate]] = defaultdict(list)
    for c in cands:
        groups[c.base].append(c)
    names: dict[int, str] = {}
    for base, members in groups.items():
        if len(members) == 1:
            names[members[0].cluster] = base
            continue
        for word in _qualifiers(members, terms):
            names.update({c.cluster: f"{base} — {word[c.cluster]}" for c in members})
            break
    return names


def _qualifiers(members: list[Candidate], terms: ShopTerms):
    """Candidate qualifier sets, best first; each maps cluster → word."""
    simple: list[Callable[[Candidate], str]] = [
        lambda c: c.band.word,
        lambda c: f"{c.freq.word} buyers",
        lambda c: f"{c.spend.word} spend",
    ]
    band, freq, spend = simple
    # When the clusters differ in band or in kind of buyer, say so even if spend alone would
    # tell them apart: "repeat buyers, high spend" says more than "high spend".
    varies = [f for f in (band, freq) if len({f(c) for c in members}) > 1]
    order = [band, freq]
    if len(varies) == 2:
        order.append(lambda c: f"{band(c)}, {freq(c)}")
    order += [lambda c, f=f: f"{f(c)}, {spend(c)}" for f in varies]
    order += [spend, lambda c: f"{band(c)}, {spend(c)}", lambda c: f"{freq(c)}, {spend(c)}",
              lambda c: f"{band(c)}, {freq(c)}, {spend(c)}"]
    for f in order:
        words = {c.cluster: f(c) for c in members}
        if len(set(words.values())) == len(members):
            yield words
    # the dimension where they differ most, relative to the shop's spread on it (the model's
    # standardised space), then the two where they differ most
    spread = np.ptp(np.array([c.center for c in members]), axis=0)
    dims = [int(d) for d in np.argsort(-spread, kind="stable")]
    dim = dims[0]
    order = sorted(members, key=lambda c: (c.center[dim], c.cluster))
    n = len(members)
    if n in _COMPARATIVE:
        if dim == 0:
            words = {c.cluster: _RECENCY_COMPARATIVE[n][i] for i, c in enumerate(order)}
        else:
            noun = "spend" if dim == 2 else "frequency"
            words = {c.cluster: f"{_COMPARATIVE[n][i]} {noun}" for i, c in enumerate(order)}
        yield words
    yield _by_value(order, dims[:2], terms)


def _by_value(order: list[Candidate], dims: list[int], terms: ShopTerms) -> dict[int, str]:
    """Each cluster's typical values on the given dimensions, with their units."""
    def fmt(c: Candidate, digits: int) -> str:
        parts = []
        for d in sorted(dims):
            x = float(f"{c.medians[d]:.{digits}g}")
            if d == 0:
                parts.append(f"{plural(round(x), 'day')} since the last order")
            elif d == 1:
                parts.append(plural(round(x), "purchase day"))
            else:
                parts.append(f"spend {terms.money(x)}")
        return "typically " + ", ".join(parts)

    for digits in range(2, 8):
        words = {c.cluster: fmt(c, digits) for c in order}
        if len(set(words.values())) == len(order):
            return words
    return {c.cluster: f"{fmt(c, 8)} (group {i + 1})" for i, c in enumerate(order)}


def match(previous: Sequence[tuple[str, np.ndarray]], current: Sequence[tuple[str, np.ndarray]]) -> list[tuple[int, int]]:
    """Pairs (previous index, current index) matching clusters by the distance between their
    centres (Hungarian assignment on squared distances in one scaled space)."""
    if not previous or not current:
        return []
    a = np.array([c for _, c in previous])
    b = np.array([c for _, c in current])
    cost = ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)
    rows, cols = linear_sum_assignment(cost)
    return list(zip(rows.tolist(), cols.tolist()))


def changes(previous_version: str, previous: Sequence[tuple[str, np.ndarray]],
            current: Sequence[tuple[str, np.ndarray]]) -> NameChanges:
    """Which names appeared, vanished, or were renamed (a vanished name whose cluster matches a
    cluster with an appeared name: the same customers under a new name)."""
    old = [n for n, _ in previous]
    new = [n for n, _ in current]
    appeared = [n for n in new if n not in set(old)]
    vanished = [n for n in old if n not in set(new)]
    renamed = []
    for i, j in match(previous, current):
        if old[i] in vanished and new[j] in appeared:
            renamed.append((old[i], new[j]))
    gone = {a for a, _ in renamed}
    came = {b for _, b in renamed}
    return NameChanges(
        previous_version=previous_version,
        appeared=tuple(n for n in appeared if n not in came),
        vanished=tuple(n for n in vanished if n not in gone),
        renamed=tuple(renamed),
    )
