"""`segment report`: one self-contained HTML file whose figures are the CLI's, with the K
diagnostics and the other algorithms; --json gives the same figures."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pytest
from conftest import run_cli

from segmentation.analysis.alternatives import _pct
from segmentation.analysis.diagnostics import KPoint, _elbow
from segmentation.serving.answers import share_text


@pytest.fixture(scope="module")
def reported(tmp_path_factory, trained):
    out = tmp_path_factory.mktemp("report") / "report.html"
    r = run_cli("--artifacts", str(trained), "report", "--out", str(out), "--json")
    assert r.code == 0, r.err
    return out, json.loads(r.out), r.err


def test_the_report_is_one_self_contained_file(reported):
    out, data, err = reported
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and data["report"] == str(out)
    images = re.findall(r'<img alt="[^"]+" src="([^"]+)"', text)
    assert len(images) == 5 and all(re.fullmatch(r"data:image/png;base64,[A-Za-z0-9+/=]+", src) for src in images)
    rest = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
    assert not re.search(r"(?i)(https?:|//[a-z0-9.-]+/|<link|<script|@import|url\(|\bhref=)", rest), "nothing fetched"
    assert re.findall(r'\bsrc="', rest) == ['src="'] * 5
    assert "Choosing K" in err and "Drawing the charts" in err  # progress on the terminal
    d = data["diagnostics"]
    header = html.unescape(text)
    # one model, its silhouettes each said with the sample they are measured on
    assert f"silhouette {data['model']['silhouette']:.3f} at training, on a " in header
    assert f"{d['served_silhouette']:.3f} on the {d['silhouette_rows']:,} customers the diagnostics below" in header


def test_its_figures_are_the_clis(reported, trained):
    out, data, _ = reported
    text = html.unescape(out.read_text(encoding="utf-8"))
    segments = json.loads(run_cli("--artifacts", str(trained), "segments", "--json").out)
    at_risk = json.loads(run_cli("--artifacts", str(trained), "at-risk", "--json").out)
    table = text[text.index('<table id="segments">') : text.index("</table>", text.index('<table id="segments">'))]
    rows = table.split("<tr>")[2:]
    assert len(rows) == len(segments["segments"])
    for row, seg in zip(rows, segments["segments"]):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        assert f"<b>{seg['name']}</b>" in cells[0]
        assert cells[1] == f"{seg['customers']:,}" and cells[2] == share_text(seg["share"])
        assert cells[3] == share_text(seg["revenue_share"]) and cells[7] == f"{seg['at_risk']:,}"
        assert cells[8] == f"{seg['fit']:.0%}" and cells[9] == seg["definition"]
        if seg["persona"]:
            assert f"Persona: {seg['persona']['text']}" in cells[0]
    assert f"At risk: {at_risk['customers']:,} customers" in text
    assert [s["name"] for s in data["segments"]] == [s["name"] for s in segments["segments"]]
    assert data["at_risk"]["customers"] == at_risk["customers"]
    assert data["model"]["version"] == segments["model_version"] and data["model"]["saved"]


def test_choosing_k_and_other_algorithms(reported):
    out, data, _ = reported
    text = html.unescape(out.read_text(encoding="utf-8"))
    d = data["diagnostics"]
    scan = d["k_scan"]
    ks = [p["k"] for p in scan["kmeans"]]
    assert ks[:11] == list(range(4, 15)) and scan["served_k"] == 11
    assert set(ks[11:]) <= {16, 18, 20, 24, 30}  # beyond 14 only while the silhouette has not peaked
    for points in (scan["segments"], scan["kmeans"]):
        best = max(points, key=lambda p: (p["silhouette"], -p["k"]))
        if best["k"] == points[-1]["k"]:  # the edge of the scan is never called best
            assert "keeps rising" in scan["recommendation"]
    assert "separates best" not in scan["recommendation"] or "peak" in scan["recommendation"]
    served = next(p for p in scan["segments"] if p["k"] == 11)
    assert f"<td>11 (served K)</td><td>{served['inertia']:,.0f}</td><td>{served['silhouette']:.3f}</td>" in text
    # the scan's refit at the served K is not the served model: the report says both numbers
    note = d["scan_note"]
    assert f"refit scores {served['silhouette']:.3f}" in note and f"scores {d['served_silhouette']:.3f}" in note
    assert note in text
    assert scan["recommendation"] in text and "K=11" in scan["recommendation"]
    # what customers did next: a chart per segment and tier, and the numbers behind it
    assert "What customers did next" in text and 'id="futures"' in text and "tier: at risk" in text
    assert "rule cell" in text
    for p in scan["segments"] + scan["kmeans"]:
        assert p["inertia"] > 0 and -1 <= p["silhouette"] <= 1 and -1 <= p["stability_ari"] <= 1
    inertia = [p["inertia"] for p in scan["kmeans"]]
    assert inertia[0] > inertia[-1]  # more clusters, less within-cluster spread
    names = [a["name"] for a in d["algorithms"]]
    assert any(n.startswith("Gaussian mixture") for n in names) and "HDBSCAN" in names and "DBSCAN" in names
    gmm = next(a for a in d["algorithms"] if "chosen_by_bic" in a)
    bic = {int(k): v for k, v in gmm["bic"].items()}
    assert gmm["chosen_by_bic"] == min(bic, key=bic.get) and gmm["clusters"] == gmm["chosen_by_bic"]
    for a in d["algorithms"]:
        assert 0 <= a["noise_share"] <= 1 and 0 <= a["band_mix"] <= 1 and a["findings"]
        assert sum(a["sizes"]) == round(d["sample"] * (1 - a["noise_share"]))
        assert a["name"] in text and all(f in text for f in a["findings"])
    assert d["recommendation"].startswith("Recommended for this shop: keep KMeans") and d["recommendation"] in text


def test_a_report_on_data_trains_in_memory(tmp_path, sample_folder):
    out = tmp_path / "r.html"
    r = run_cli(
        "--artifacts", str(tmp_path / "a"), "-q", "report", "--data", str(sample_folder), "--k", "8", "--out", str(out)
    )
    assert r.code == 0, r.err
    assert "Trained for this report (not saved)" in out.read_text() and not (tmp_path / "a" / "models").exists()
    assert "Persona: buys" in out.read_text()  # the sample has the Olist extra files
    r = run_cli("--artifacts", str(tmp_path / "empty"), "report", "--out", str(tmp_path / "x.html"))
    assert r.code == 1 and "\n" not in r.err.strip() and not (tmp_path / "x.html").exists()


def test_the_elbow_is_the_knee_of_the_curve():
    points = [KPoint(k, v, None, 1.0) for k, v in zip(range(4, 12), [100, 50, 30, 25, 22, 20, 19, 18])]
    assert _elbow(points) == 6
    assert _elbow([KPoint(4, 5.0, None, 1.0), KPoint(5, 5.0, None, 1.0), KPoint(6, 5.0, None, 1.0)]) == 4
    assert _pct(0.0004) == "0.04%" and _pct(0.5) == "50%" and _pct(0) == "0%"


def test_density_clusters_are_described_in_the_shops_terms(reported):
    _, data, _ = reported
    hdb = next(a for a in data["diagnostics"]["algorithms"] if a["name"] == "HDBSCAN")
    assert all(re.search(r"typically \d[\d,]* days? since the last order", f) for f in hdb["findings"])
    assert np.isfinite(hdb["ari_vs_segments"])


def test_a_report_on_a_handful_of_customers(tmp_path):
    """Too few customers for every K and for density clustering: the report says what it could
    measure, and never fails."""
    lines = ["customer,order,date,amount"] + [
        f"c{i},o{i}-{j},2024-0{1 + (i * 3 + j) % 8}-1{j},{10 + 7 * i + j}" for i in range(6) for j in range(1 + i % 2)
    ]
    path = tmp_path / "tiny.csv"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "tiny.html"
    flags = ["--customer-col", "customer", "--order-col", "order", "--date-col", "date", "--amount-col", "amount"]
    r = run_cli(
        "--artifacts",
        str(tmp_path / "a"),
        "-q",
        "report",
        "--data",
        str(path),
        *flags,
        "--k",
        "4",
        "--out",
        str(out),
        "--json",
    )
    assert r.code == 0, r.err
    d = json.loads(r.out)["diagnostics"]
    assert d["sample"] == 6 and all(p["k"] < 6 for p in d["k_scan"]["kmeans"])
    assert "HDBSCAN and DBSCAN were not run: 6 customers are too few" in d["recommendation"]
    assert out.exists() and "HDBSCAN and DBSCAN were not run" in html.unescape(out.read_text())


def test_the_recommendation_follows_the_measured_figures_and_can_recommend_another():
    from types import SimpleNamespace

    from segmentation.analysis.alternatives import Algorithm, _recommend

    trained = SimpleNamespace(
        info=SimpleNamespace(k=8), segments=[SimpleNamespace(check=SimpleNamespace(passed=True))] * 8
    )

    def algo(name, sil, clusters=8, noise=0.0, mix=0.0):
        return Algorithm(name, "", clusters, (1,) * clusters, noise, sil, 0.5, mix)

    mixed = algo("Gaussian mixture", 0.40, mix=0.30)
    clean = algo("Gaussian mixture", 0.40)
    close = algo("HDBSCAN", 0.21)
    keep = _recommend(trained, 0.20, [mixed, close], 5_000)
    assert keep.startswith("Recommended for this shop: keep KMeans within recency bands")
    assert (
        "separates better (silhouette 0.400); but 30%" in keep and "separates about as well (silhouette 0.210)" in keep
    )
    other = _recommend(trained, 0.20, [clean, close], 5_000)
    assert other.startswith("Recommended for this shop: consider Gaussian mixture (8 clusters, silhouette 0.400")
    lower = _recommend(trained, 0.20, [algo("DBSCAN", 0.10, mix=0.2)], 5_000)
    assert "separates less well (silhouette 0.100); and 20%" in lower and "Active" not in lower
