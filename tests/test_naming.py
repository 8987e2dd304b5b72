from __future__ import annotations

import itertools

import numpy as np
import pytest

from segmentation import naming, playbook
from segmentation.errors import PlaybookError


def test_every_cell_has_exactly_one_known_name_and_every_name_is_reachable():
    cells = {}
    for r, f, m in itertools.product(range(1, 6), repeat=3):
        cells[(r, f, m)] = naming.name_for_scores(r, f, m)
    assert len(cells) == 125
    assert set(cells.values()) <= set(naming.VOCABULARY)
    assert set(cells.values()) == set(naming.VOCABULARY)  # no name shadowed by another


def test_grid_semantics():
    assert naming.name_for_scores(5, 5, 5) == "Champions"
    assert naming.name_for_scores(1, 1, 1) == "Lost"
    assert naming.name_for_scores(5, 1, 1) == "New Customers"
    assert naming.name_for_scores(1, 5, 5) == "Can't Lose Them"
    # one order is never "frequent", however large: no At Risk / Loyal / Champions at F = 1
    for r, m in itertools.product(range(1, 6), repeat=2):
        assert naming.name_for_scores(r, 1, m) not in {"Champions", "Loyal Customers", "At Risk", "Can't Lose Them"}
    with pytest.raises(ValueError):
        naming.name_for_scores(0, 3, 3)


def test_percentile_handles_ties_by_interpolating_between_distinct_values():
    values = np.sort(np.array([1] * 97 + [2] * 2 + [5]))
    assert naming.percentile(values, 1.0) == 0.0
    assert naming.percentile(values, 2.0) == pytest.approx(0.97)
    assert naming.percentile(values, 1.5) == pytest.approx(0.485)
    assert naming.percentile(values, 9.0) == 1.0
    assert [naming.score(p) for p in (0.0, 0.19, 0.2, 0.5, 0.97, 1.0)] == [1, 1, 2, 3, 5, 5]


def test_clusters_named_from_centroids_and_disambiguated():
    rng = np.random.default_rng(0)
    n = 5000
    rfm = np.column_stack([rng.integers(1, 700, n), np.where(rng.random(n) < 0.97, 1, 3), rng.lognormal(4.5, 0.8, n)])
    centroids = np.array([
        [650, 1, 25], [640, 1, 60],    # two old one-time clusters, low and higher spend
        [5, 1, 50],                    # brand new, small first order
        [20, 4, 900],                  # recent, frequent, big spenders
    ], dtype=float)
    scaled = (np.log1p(centroids) - np.log1p(rfm).mean(0)) / np.log1p(rfm).std(0)
    named = naming.name_clusters(centroids, scaled, rfm)
    names = [c.name for c in named]
    assert len(set(names)) == len(names)
    assert named[2].base == "New Customers" and named[3].base == "Champions"
    assert named[0].base == named[1].base == "Lost"
    assert named[0].name.endswith("low spend") and named[1].name.endswith("high spend")


def test_playbook_covers_every_segment():
    book = playbook.load()
    for name in naming.VOCABULARY:
        play = book.play(name)
        assert play.description and 2 <= len(play.actions) <= 4
    assert set(book.at_risk) == {"At Risk", "Can't Lose Them", "About To Sleep"}


def test_playbook_errors_are_one_line(tmp_path):
    text = playbook.DEFAULT_PATH.read_text()
    bad = tmp_path / "p.toml"
    bad.write_text(text.replace('[segments."Lost"]', '[segments."Gone"]'))
    with pytest.raises(PlaybookError, match='missing \\[segments."Lost"\\]'):
        playbook.load(bad)
    bad.write_text(text.replace('at_risk = ["At Risk"', 'at_risk = ["Nobody"'))
    with pytest.raises(PlaybookError, match="at_risk must list"):
        playbook.load(bad)
    bad.write_text("segments = [")
    with pytest.raises(PlaybookError, match="not valid TOML"):
        playbook.load(bad)


def test_playbook_edits_apply_without_restart(tmp_path, monkeypatch):
    p = tmp_path / "p.toml"
    p.write_text(playbook.DEFAULT_PATH.read_text())
    monkeypatch.setenv("SEGMENT_PLAYBOOK", str(p))
    assert playbook.load().play("Lost").description.startswith("Lowest")
    import os
    p.write_text(p.read_text().replace("Lowest recency, frequency and spend", "Gone for good"))
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert playbook.load().play("Lost").description.startswith("Gone for good")
