"""Train from a CSV of another data set (scikit-learn's wine), list it, promote it, serve it: nothing is iris."""

from __future__ import annotations

import csv
import json

from sklearn.datasets import load_wine
from typer.testing import CliRunner

from decider.cli import app as cli
from decider.config import load_settings
from helpers import api, review_headers, submit, write_config


def write_wine_csv(path) -> None:  # type: ignore[no-untyped-def]
    wine = load_wine()
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*wine.feature_names, "cultivar"])
        for row, target in zip(wine.data, wine.target, strict=True):
            writer.writerow([*row, f"cultivar_{target}"])


def test_train_a_csv_data_set_and_serve_it(tmp_path, sqlite_url):
    data, models = tmp_path / "wine.csv", tmp_path / "models"
    write_wine_csv(data)
    config = write_config(tmp_path, sqlite_url, models_dir=models, live="wine-v1")
    runner = CliRunner()

    refused = runner.invoke(cli, ["train", "--config", str(config), "--csv", str(data)])
    assert refused.exit_code == 2 and "--target is required" in refused.output
    result = runner.invoke(cli, ["train", "--config", str(config), "--csv", str(data), "--target", "cultivar"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == "wine-v1"  # named after the CSV

    card = json.loads((models / "wine-v1.json").read_text())
    assert card["data_source"] == "csv:wine.csv target=cultivar"
    assert card["classes"] == ["cultivar_0", "cultivar_1", "cultivar_2"]
    assert card["features"] == load_wine().feature_names  # every column by default
    assert card["test"]["accuracy"] > 0.8

    listed = runner.invoke(cli, ["models", "list", "--config", str(config)])
    assert listed.exit_code == 0, listed.output
    assert "wine-v1  [live]" in listed.stdout and "csv:wine.csv target=cultivar" in listed.stdout

    wine = load_wine()
    with api(load_settings(config)) as (client, h):
        for i in (0, 70, 160):  # one wine of each cultivar
            features = {name: float(wine.data[i][wine.feature_names.index(name)]) for name in card["features"]}
            case = submit(client, h, features)
            assert case["model_version"] == "wine-v1"
            assert set(case["probabilities"]) == {"cultivar_0", "cultivar_1", "cultivar_2"}
        bad = client.post("/api/v1/cases", json={"features": {"petal width (cm)": 1.0}}, headers=h)
        assert bad.status_code == 422 and card["features"][0] in bad.json()["detail"]
        models_api = client.get("/api/v1/models", headers=review_headers(client, "root")).json()
    assert models_api["deployment"]["live"] == "wine-v1"
    assert [v["id"] for v in models_api["versions"]] == ["wine-v1"]
