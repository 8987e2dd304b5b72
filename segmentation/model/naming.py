"""Unique, readable segment names, and how names changed since the previous model.

Each cluster's base name comes from the definitions table (``definitions.name_for``). When
several clusters earn the same base name, a qualifier tells them apart in words a marketer
reads: first the recency band where they differ ("— lapsing", "— lapsed"), then the kind of
buyer ("— one-time buyers", "— repeat buyers"), each applied again inside the clusters that
still share words; clusters alike in both are told apart by

1. the spend level of their typical customer ("— high spend", "— mid spend", "— low spend"),
   said only when at least two thirds of each cluster are at that level;
2. comparisons on the dimension where their typical customers differ most, measured against
   the shop's spread ("— higher spend", "— lower spend"; "— most recent" … "— longest ago"), up
   to five clusters whose typical values all differ;
3. their typical values on as few dimensions as tell them apart, written as the typical line
   writes them ("— typically 207 days since the last order, spend R$640").

Every word is true of the typical (median) customer of its cluster.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from segmentation.model.definitions import Scope
from segmentation.model.segments import NameChanges, plural
from segmentation.model.terms import Band, Freq, ShopTerms, Spend


@dataclass(frozen=True)
class Candidate:
    """What naming needs to know about one cluster."""

    cluster: int
    base: str
    band: Band
    freq: Freq  # of its median customer (by purchase days)
    spend: Spend  # of its median customer
    medians: tuple[float, float, float]  # recency days, purchase days, money
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)  # the medians in the model's standardised space
    spend_share: float = 1.0  # share of its customers at the spend level of its median customer
    kind_share: float = 1.0  # share of its customers of its median customer's kind (one-time or repeat)


SPEND_WORD_SHARE = 2 / 3

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


_RETURNED_WORD = f"{Freq.REPEAT.word} buyers"


def qualified_names(cands: Sequence[Candidate], terms: ShopTerms) -> dict[int, str]:
    """cluster → unique display name."""
    return {c: name for c, (name, _) in qualify(cands, terms).items()}


def qualify(cands: Sequence[Candidate], terms: ShopTerms) -> dict[int, tuple[str, Scope]]:
    """cluster → (unique display name, what its qualifier words add to the base definition)."""
    groups: dict[str, list[Candidate]] = defaultdict(list)
    for c in cands:
        groups[c.base].append(c)
    out: dict[int, tuple[str, Scope]] = {}
    for base, members in groups.items():
        words = _words(members, terms)
        for c in members:
            name = " — ".join([base, ", ".join(words[c.cluster])]) if words[c.cluster] else base
            out[c.cluster] = (name, _scope(c, words[c.cluster]))
    return out


def _kind_word(c: Candidate) -> str:
    """ "one-time buyers" or "repeat buyers" (two or more purchase days): the kind the estimator
    clusters apart, so the word holds for every customer of a cluster (a "frequent" median would
    hold for as few as half of them)."""
    return f"{Freq.ONE_TIME.word} buyers" if c.freq == Freq.ONE_TIME else _RETURNED_WORD


def _scope(c: Candidate, words: list[str]) -> Scope:
    """The conditions a cluster's qualifier words state: a band word its band, "one-time buyers"
    one purchase day, "repeat buyers" two or more, a spend level its level (comparisons and
    typical values state no condition)."""
    bands = frozenset({c.band}) if c.band.word in words else None
    freqs = None
    if _RETURNED_WORD in words:
        freqs = frozenset({Freq.REPEAT, Freq.FREQUENT})
    elif f"{Freq.ONE_TIME.word} buyers" in words:
        freqs = frozenset({Freq.ONE_TIME})
    spends = frozenset({c.spend}) if f"{c.spend.word} spend" in words else None
    return Scope(bands, freqs, spends)


def _words(members: list[Candidate], terms: ShopTerms) -> dict[int, list[str]]:
    """Words that tell these clusters apart: the band or kind of buyer where they differ (then
    the same again inside each part), else spend levels, comparisons or typical values."""
    if len(members) == 1:
        return {members[0].cluster: []}
    for describe in (lambda c: c.band.word, _kind_word):
        if describe is _kind_word and any(c.kind_share < 1.0 for c in members):
            continue  # a cluster of both kinds (K below the strata merged them): the word would exclude some
        parts: dict[str, list[Candidate]] = defaultdict(list)
        for c in members:
            parts[describe(c)].append(c)
        if len(parts) > 1:
            out: dict[int, list[str]] = {}
            for word, part in parts.items():
                inner = _words(part, terms)
                out.update({c.cluster: [word, *inner[c.cluster]] for c in part})
            return out
    # an absolute spend level only when two thirds of each cluster are at it: KMeans draws its
    # own lines, and "low spend" over a cluster that is 40% mid spend would mislead
    levels = {c.cluster: f"{c.spend.word} spend" for c in members if c.spend_share >= SPEND_WORD_SHARE}
    if len(levels) == len(members) and len(set(levels.values())) == len(members):
        return {k: [v] for k, v in levels.items()}
    # where their typical customers differ most, relative to the shop's spread: comparisons when
    # the typical values all differ, else the typical values themselves
    spread = np.ptp(np.array([c.center for c in members]), axis=0)
    dims = [int(d) for d in np.argsort(-spread, kind="stable")]
    dim = dims[0]
    order = sorted(members, key=lambda c: (c.medians[dim], c.cluster))
    n = len(members)
    if n in _COMPARATIVE and len({c.medians[dim] for c in members}) == n:
        if dim == 0:
            return {c.cluster: [_RECENCY_COMPARATIVE[n][i]] for i, c in enumerate(order)}
        noun = "spend" if dim == 2 else "frequency"
        return {c.cluster: [f"{_COMPARATIVE[n][i]} {noun}"] for i, c in enumerate(order)}
    return {k: [v] for k, v in _by_value(order, dims, terms).items()}


def _by_value(order: list[Candidate], dims: list[int], terms: ShopTerms) -> dict[int, str]:
    """Each cluster's typical values, written as the segment's typical line writes them, on as
    few dimensions as tell them apart (most different first)."""

    def fmt(c: Candidate, used: list[int]) -> str:
        parts = []
        for d in sorted(used):
            if d == 0:
                parts.append(f"{plural(round(c.medians[0]), 'day')} since the last order")
            elif d == 1:
                parts.append(plural(c.medians[1], "purchase day"))
            else:
                parts.append(f"spend {terms.money(c.medians[2])}")
        return "typically " + ", ".join(parts)

    for n in range(1, len(dims) + 1):
        words = {c.cluster: fmt(c, dims[:n]) for c in order}
        if len(set(words.values())) == len(order):
            return words
    return {c.cluster: f"{fmt(c, dims)} (group {i + 1})" for i, c in enumerate(order)}


def match(
    previous: Sequence[tuple[str, np.ndarray]], current: Sequence[tuple[str, np.ndarray]]
) -> list[tuple[int, int]]:
    """Pairs (previous index, current index) matching clusters by the distance between their
    centres (Hungarian assignment on squared distances in one scaled space)."""
    if not previous or not current:
        return []
    a = np.array([c for _, c in previous])
    b = np.array([c for _, c in current])
    cost = ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)
    rows, cols = linear_sum_assignment(cost)
    return list(zip(rows.tolist(), cols.tolist()))


def changes(
    previous_version: str, previous: Sequence[tuple[str, np.ndarray]], current: Sequence[tuple[str, np.ndarray]]
) -> NameChanges:
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
