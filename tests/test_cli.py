from __future__ import annotations

import csv
import json
import os
import shlex

import pytest
from conftest import run_cli

PREDICT_KEYS = {"segment", "cluster", "description", "actions", "recency", "frequency", "monetary"}
SEGMENT_KEYS = {"name", "cluster", "customers", "share", "recency_median", "frequency_mean", "monetary_median"}


def cli(root, *argv):
    return run_cli("--artifacts", str(root), "-q", *argv)


def test_train_json(tmp_path, sample_folder):
    r = cli(tmp_path, "train", "--data", str(sample_folder), "--k", "8", "--json")
    assert r.code == 0, r.err
    d = json.loads(r.out)
    assert d["model_version"] == "v0001"
    assert isinstance(d["excluded"], dict) and d["excluded"]["not_delivered"] > 0
    assert 4 <= len(d["segments"]) <= 8 and all(s["customers"] >= 25 for s in d["segments"])  # none degenerate
    for s in d["segments"]:
        assert SEGMENT_KEYS <= set(s)
    assert sum(s["customers"] for s in d["segments"]) == d["customers"]
    assert abs(sum(s["share"] for s in d["segments"]) - 1) < 1e-9
    assert len({s["name"] for s in d["segments"]}) == len(d["segments"])
    rb = d["rule_based"]["segments"]
    assert all({"name", "customers"} <= set(s) for s in rb)
    assert sum(s["customers"] for s in rb) == d["customers"]


def test_train_text_and_default_sample(tmp_path, monkeypatch):
    import segment_cli.main as cli_mod
    import segmentation.data.sample as sample_mod

    real = sample_mod.ensure_default_sample
    monkeypatch.setattr(sample_mod, "ensure_default_sample", lambda root: real(root, orders=4_000))
    r = run_cli("--artifacts", str(tmp_path), "train")
    assert r.code == 0, r.err
    assert "Generating the built-in sample" in r.err and "Clustering" in r.err
    assert "Trained model v0001" in r.out and "Rule-based quantile segments" in r.out
    assert list((tmp_path / "samples").glob("*/.complete"))
    r2 = run_cli("--artifacts", str(tmp_path), "train")
    assert "Generating" not in r2.err and "Trained model v0002" in r2.out
    assert cli_mod is not None


def test_predict_json_and_text(trained):
    r = cli(trained, "predict", "30", "2", "150", "--json")
    assert r.code == 0, r.err
    d = json.loads(r.out)
    assert PREDICT_KEYS <= set(d)
    assert (d["recency"], d["frequency"], d["monetary"]) == (30, 2, 150)
    assert 2 <= len(d["actions"]) <= 4
    segs = json.loads(cli(trained, "segments", "--json").out)["segments"]
    names = {s["name"] for s in segs}
    # a segment of the model, or a name from the definitions when no segment is made of such customers
    assert d["segment"] in names or (d["segment"] == d["base"] and d["numbers_of"] != d["segment"])
    assert d["numbers_of"] in names and d["fits_definition"]
    # other spellings give the same answer
    for spelling in (
        ["r=30", "f=2", "m=150"],
        ["30d", "2", "$150"],
        ["m=150,00", "30", "2"],
        ["30 days", "2 orders", "150"],
    ):
        assert json.loads(cli(trained, "predict", *spelling, "--json").out)["segment"] == d["segment"]
    text = cli(trained, "predict", "30", "2", "150")
    assert text.out.startswith(d["segment"] + ":") and "Recommended actions" in text.out
    assert d["note"] is None
    far = json.loads(cli(trained, "predict", "36500", "1000000", "1e10", "--json").out)
    assert far["note"].startswith("Beyond the training data: recency 36,500 (trained on 1 to")
    assert "frequency 1,000,000" in far["note"] and "monetary 10,000,000,000" in far["note"]
    assert "Note: Beyond the training data" in cli(trained, "predict", "36500", "1", "100").out


@pytest.mark.parametrize(
    "values, message",
    [
        (["30", "2"], "exactly three values"),
        (["30", "2", "150", "4"], "exactly three values"),
        (["abc", "2", "150"], "recency must be a number, not 'abc'"),
        (["-5", "2", "150"], "recency must be between 0 and 36,500 days"),
        (["30", "0", "150"], "frequency must be between 1"),
        (["30", "2.5", "150"], "whole number"),
        (["30", "2", "nan"], "finite number"),
        (["30", "2", "inf"], "finite number"),
        (["30", "2", "1e300"], "monetary must be between"),
        (["99999999", "2", "150"], "recency must be between"),
    ],
)
def test_predict_bad_arguments(trained, values, message):
    r = cli(trained, "predict", *values)
    assert r.code == 2
    assert message in r.err
    assert r.err.count("\n") == 1 and "Traceback" not in r.err and r.out == ""


def test_customer_lookup(trained, sample_folder):
    segs = json.loads(cli(trained, "segments", "--json").out)
    assert segs["model_version"] == "v0001"
    assert all(SEGMENT_KEYS | {"description", "actions"} <= set(s) for s in segs["segments"])
    out = trained / "any.csv"
    first = segs["segments"][0]["name"]
    r = cli(trained, "export", first, "--out", str(out))
    assert r.code == 0, r.err
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == segs["segments"][0]["customers"]
    cid = rows[0]["customer_id"]
    d = json.loads(cli(trained, "customer", cid, "--json").out)
    assert d["customer_id"] == cid and d["segment"] == first
    assert PREDICT_KEYS <= set(d)
    assert str(d["recency"]) == rows[0]["recency_days"]
    r = cli(trained, "customer", "no-such-person")
    assert r.code == 2 and "No customer 'no-such-person'" in r.err and r.err.count("\n") == 1


def test_export_unknown_segment_and_base_names(trained, tmp_path):
    r = cli(trained, "export", "VIPs", "--out", str(tmp_path / "x.csv"))
    assert r.code == 2 and "No segment 'VIPs'" in r.err and "Segments:" in r.err
    assert not (tmp_path / "x.csv").exists()
    segs = json.loads(cli(trained, "segments", "--json").out)["segments"]
    qualified = [s for s in segs if " — " in s["name"]]
    assert qualified  # 11 clusters on this sample always share some names
    base = qualified[0]["name"].split(" — ")[0]  # a base name exports every cluster that carries it
    r = cli(trained, "export", base.lower(), "--out", str(tmp_path / "b.csv"))
    total = sum(s["customers"] for s in segs if s["name"].split(" — ")[0] == base)
    assert r.code == 0 and f"Wrote {total:,} customers" in r.out
    for out, message in (
        (str(tmp_path), "is a folder"),
        ("", "is a folder"),
        (str(trained / "models" / "CURRENT"), "inside the model folder"),
    ):
        r = cli(trained, "export", base, "--out", out)
        assert r.code == 2 and message in r.err and r.err.count("\n") == 1, out


def test_every_output_path_is_checked_before_any_work(trained, tmp_path):
    (tmp_path / "a-file").write_text("")
    bad = [
        (str(tmp_path), "is a folder"),
        (str(tmp_path / "missing" / "x.out"), "does not exist; create it first"),
        (str(tmp_path / "a-file" / "x.out"), "is a file, not a folder"),
    ]
    for command in (["report"], ["export", "Lost"], ["at-risk"]):
        for out, said in bad:
            r = cli(trained, *command, "--out", out)
            assert r.code == 2 and said in r.err and r.err.count("\n") == 1, (command, out, r.err)
            assert "Choosing K" not in r.err  # refused before the work, not after it
    assert not (tmp_path / "missing").exists()  # nothing is created on the way
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        r = cli(trained, "report", "--out", str(locked / "r.html"))
        assert r.code == 2 and "permission denied" in r.err


def test_usage_errors_are_one_line(tmp_path):
    for argv in (
        ["train", "--k", "x"],
        ["train", "--k", "1"],
        ["frobnicate"],
        ["train", "--as-of", "yesterday"],
        ["export", "Lost"],
        ["sample-data", "--out", str(tmp_path), "--seed", "-1"],
    ):
        r = cli(tmp_path, *argv)
        assert r.code == 2, argv
        assert r.err.count("\n") == 1 and "Traceback" not in r.err
    r = cli(tmp_path, "predict", "30", "2", "150")
    assert r.code == 1 and "run 'segment train' first" in r.err


def test_model_listing_and_rollback(tmp_path, sample_folder):
    for _ in range(2):
        assert cli(tmp_path, "train", "--data", str(sample_folder), "--k", "5").code == 0
    listing = json.loads(cli(tmp_path, "model", "--json").out)
    assert listing["current"] == "v0002" and len(listing["versions"]) == 2
    r = cli(tmp_path, "rollback")
    assert r.code == 0 and "now serving v0001 (was v0002)" in r.out
    assert json.loads(cli(tmp_path, "predict", "1", "1", "1", "--json").out)["segment"]
    assert json.loads(cli(tmp_path, "model", "--json").out)["current"] == "v0001"
    r = cli(tmp_path, "serve", "v0002")
    assert r.code == 0 and "Now serving v0002 (was v0001)" in r.out
    r = cli(tmp_path, "serve", "v0007")
    assert r.code == 2 and r.err.count("\n") == 1 and "is not kept (kept: v0001, v0002)" in r.err


def test_sample_data_command(tmp_path):
    r = cli(tmp_path, "sample-data", "--orders", "1500", "--out", str(tmp_path / "s"), "--seed", "3")
    assert r.code == 0 and "Wrote 1,500 orders" in r.out
    assert (tmp_path / "s" / "olist_orders_dataset.csv").exists()
    r = cli(tmp_path, "sample-data", "--orders", "0", "--out", str(tmp_path / "s"))
    assert r.code == 2 and r.err.count("\n") == 1
    (tmp_path / "file").write_text("")
    r = cli(tmp_path, "sample-data", "--orders", "10", "--out", str(tmp_path / "file"))
    assert r.code == 1 and "is not a folder" in r.err


def test_sample_data_transactions_prints_a_train_command_that_works(tmp_path):
    r = cli(tmp_path, "sample-data", "--orders", "4000", "--layout", "transactions", "--out", str(tmp_path / "t"))
    assert r.code == 0 and "the delivered ones, to" in r.out
    command = shlex.split(r.out.splitlines()[-1].removeprefix("Train on it with: segment "))
    assert command[:3] == ["train", "--data", str(tmp_path / "t" / "transactions.parquet")]
    trained = cli(tmp_path, *command, "--json")
    assert trained.code == 0, trained.err
    assert json.loads(trained.out)["customers"] > 3000


def test_train_json_has_terms_at_risk_and_changes(tmp_path, sample_folder):
    first = json.loads(cli(tmp_path, "train", "--data", str(sample_folder), "--json").out)
    assert first["changes"] is None and first["seed"] == 42
    assert {"return_time", "return_window", "lost_after", "frequent_from", "spend_high_from"} <= set(first["terms"])
    risk = first["at_risk"]
    assert {
        "customers",
        "revenue_at_stake",
        "share_of_customers",
        "share_of_expected_revenue",
        "past_spend",
        "horizon_days",
        "definition",
        "by_segment",
    } <= set(risk)
    assert risk["customers"] == sum(s["at_risk"] for s in first["segments"])
    assert risk["customers"] == sum(s["customers"] for s in risk["by_segment"])
    assert all(s["definition_holds"] and s["fit"] >= 0.5 for s in first["segments"])
    second = json.loads(cli(tmp_path, "train", "--data", str(sample_folder), "--seed", "7", "--json").out)
    assert second["seed"] == 7 and second["changes"]["previous_version"] == "v0001"
    text = cli(tmp_path, "train", "--data", str(sample_folder)).out
    assert "The shop's terms" in text and "At risk:" in text and "Compared with v0002" in text
    assert cli(tmp_path, "train", "--data", str(sample_folder), "--k", "3").code == 2


def test_at_risk_command(trained, tmp_path):
    d = json.loads(cli(trained, "at-risk", "--json").out)
    assert set(d) >= {"customers", "revenue_at_stake", "share_of_customers", "definition", "by_segment"}
    assert d["customers"] > 0 and all({"name", "customers", "revenue_at_stake"} == set(s) for s in d["by_segment"])
    text = cli(trained, "at-risk").out
    assert f"{d['customers']:,} customers" in text and "Who counts: repeat buyers" in text
    r = cli(trained, "at-risk", "--out", str(tmp_path / "risk.csv"))
    assert r.code == 0 and f"Wrote {d['customers']:,} customers at risk" in r.out
    assert len(list(csv.DictReader(open(tmp_path / "risk.csv")))) == d["customers"]


def test_answers_show_the_segment_s_typical_numbers_and_definition(trained):
    out = cli(trained, "predict", "650", "2", "220").out
    assert "This customer: 650 days since the last order (lost), 2 orders (repeat)" in out
    assert "typically" in out and "Its definition:" in out
    first_line = out.splitlines()[0]
    assert not first_line.startswith(("Champions", "Loyal", "Potential", "Promising", "New"))  # 650 days is not active
    seg = cli(trained, "segments").out
    assert "Definition:" in seg and "Typically" in seg
    model = cli(trained, "model").out
    assert "Return time" in model and "At risk: repeat buyers" in model
    listing = json.loads(cli(trained, "model", "--json").out)
    assert listing["terms"]["return_time"] >= 1 and "text" in listing["at_risk_rule"]


def test_validate_command(tmp_path, sample_folder, monkeypatch):
    from segment_cli import checks_text, commands
    from segment_cli.as_json import validation_json

    reports = []  # the report behind the JSON, to print as text too (one validation: 45 fits)
    monkeypatch.setattr(commands, "validation_json", lambda report: reports.append(report) or validation_json(report))
    r = cli(tmp_path, "validate", "--data", str(sample_folder), "--json")
    assert r.code == 0, r.err
    d = json.loads(r.out)
    assert d["passed"] and d["invariants"]["hold"] and d["seed_max_change"] <= 0.02
    assert d["at_risk_max_change"] <= 0.01 and all(s["passed"] for s in d["segments"])
    assert {x["k"] for x in d["runs"]} == set(range(6, 15)) and len({x["seed"] for x in d["runs"]}) == 5
    text = checks_text.validation(reports[0])
    assert "Overall: pass" in text and "No promotion without a purchase" in text and "BG/NBD" in text
    assert not (tmp_path / "models").exists()  # validation saves nothing


def test_currency_is_a_property_of_the_data(tmp_path):
    import pandas as pd
    from conftest import shop_orders

    path = tmp_path / "sales.csv"
    shop_orders(3).to_csv(path, index=False)
    flags = [
        "--data",
        str(path),
        "--customer-col",
        "customer",
        "--order-col",
        "order",
        "--date-col",
        "date",
        "--amount-col",
        "amount",
    ]
    assert cli(tmp_path, "train", *flags, "--currency", "€").code == 0
    out = cli(tmp_path, "predict", "30", "2", "150").out
    assert "spend €150" in out and "R$" not in out
    r = cli(tmp_path, "train", *flags, "--currency", "12 dollars")
    assert r.code == 1 and "--currency is a short symbol" in r.err and r.err.count("\n") == 1
    assert pd.read_csv(path).shape[0] > 0


def test_sample_flag(tmp_path, sample_folder):
    from conftest import run_cli as run

    r = run("--artifacts", str(tmp_path), "-q", "train", "--data", str(sample_folder), "--sample", "lots")
    assert r.code == 2 and "--sample" in r.err and "Traceback" not in r.err
    r = run("--artifacts", str(tmp_path), "-q", "train", "--data", str(sample_folder), "--sample", "50")
    assert r.code == 2 and "at least 1000" in r.err
    r = run("--artifacts", str(tmp_path), "-q", "train", "--data", str(sample_folder), "--sample", "1000", "--json")
    assert r.code == 0, r.err
    import json

    out = json.loads(r.out)
    assert out["fitted_on"] < out["customers"]
    r = run("--artifacts", str(tmp_path), "-q", "train", "--data", str(sample_folder), "--sample", "all", "--json")
    assert r.code == 0 and json.loads(r.out)["fitted_on"] == json.loads(r.out)["customers"]


def test_missing_column_flags_are_a_usage_error(tmp_path):
    csv_path = tmp_path / "orders.csv"
    csv_path.write_text("email,day,total\na@x,2024-01-01,10\n")
    r = cli(tmp_path, "train", "--data", str(csv_path), "--amount-col", "total")
    assert r.code == 2 and "--customer-col and --date-col are required" in r.err and r.err.count("\n") == 1
