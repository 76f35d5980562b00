"""The input contract: clients send the whole record; model versions that use other columns of it replace
each other without a client noticing; a field outside it is still an error."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from sklearn.datasets import load_iris

from decider.config import load_settings
from decider.registry.training import iris_dataset, train
from helpers import Submitter, api, model_versions, review_headers, seed_credentials, server, submit, write_config

IRIS = load_iris()
NAMES = list(IRIS.feature_names)
FAST = "[server]\nreload_seconds = 0.3\n"


def record(i: int) -> dict[str, float]:
    """A whole iris record, as a client that has all four measurements sends it."""
    return {name: float(v) for name, v in zip(NAMES, IRIS.data[i % 150], strict=True)}


def models_with_petals(tmp: Path) -> Path:
    """iris-v1 (sepal length, petal width), iris-v2..v4 as in helpers, and iris-v5 on the two petal columns."""
    out = model_versions(tmp)
    train(iris_dataset(), name="iris", version=5, out_dir=out, estimator="logistic", use=NAMES[2:])
    return out


def test_whole_records_typos_and_missing_fields(tmp_path, db_url):
    with api(load_settings(write_config(tmp_path, db_url))) as (client, h):
        case = submit(client, h, record(0))
        assert case["model_version"] == "iris-v1" and case["contract_version"]
        stored = client.get(f"/api/v1/cases/{case['id']}", headers=h).json()
        assert stored["decision"] == "setosa"

        typo = client.post("/api/v1/cases", headers=h, json={"features": record(0) | {"petal widht (cm)": 1.0}})
        assert typo.status_code == 422 and typo.json()["field"] == "features.petal widht (cm)"
        assert "unknown field" in typo.json()["detail"] and "sepal width (cm)" in typo.json()["detail"]

        partial = {k: v for k, v in record(0).items() if k != "petal width (cm)"}
        missing = client.post("/api/v1/cases", headers=h, json={"features": partial})
        assert missing.status_code == 422 and missing.json()["field"] == "features.petal width (cm)"
        for name in ("petal width (cm)", "petal length (cm)"):  # used by the live model, and not
            nulled = client.post("/api/v1/cases", headers=h, json={"features": record(0) | {name: None}})
            assert nulled.status_code == 422 and nulled.json()["field"] == f"features.{name}"
            assert "never missing in training" in nulled.json()["detail"]
            hint = "the live model needs it" if name == "petal width (cm)" else "or leave the field out"
            assert hint in nulled.json()["detail"]
        # A field the live model does not use may be left out: it is in the contract, not needed now.
        only_used = submit(client, h, {"sepal length (cm)": 5.0, "petal width (cm)": 0.2})
        assert only_used["decision"] == "setosa"

        models = client.get("/api/v1/models", headers=review_headers(client, "root")).json()
        assert sorted(models["contract"]["fields"]) == sorted(NAMES)
        assert models["contract"]["version"] == case["contract_version"]
        assert models["contract"]["fields"]["petal length (cm)"] == {"type": "number", "min": 1.0, "max": 6.9,
                                                                     "nullable": False}
        features = client.get("/openapi.json").json()["components"]["schemas"]["CaseIn"]["properties"]["features"]
        assert sorted(features["properties"]) == sorted(NAMES) and features["additionalProperties"] is False
        assert sorted(features["required"]) == ["petal width (cm)", "sepal length (cm)"]
        assert "Seen in training: 1 to 6.9" in features["properties"]["petal length (cm)"]["description"]


def decider(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "decider", *args, "--config", str(config)],
                          capture_output=True, text=True, env={**os.environ, "USER": "carol"}, timeout=60)


def wait_for(predicate, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met before the deadline")


def test_promote_a_model_on_other_columns_while_clients_keep_sending(tmp_path, db_url):
    config = write_config(tmp_path, db_url, models_dir=models_with_petals(tmp_path), extra=FAST)
    key = seed_credentials(load_settings(config))
    with server(config) as base:
        client = Submitter(base, key, lambda i: {"features": record(i)})
        client.start()
        wait_for(lambda: len(client.done) >= 20)
        promoted = decider(config, "models", "promote", "iris-v5")
        assert promoted.returncode == 0, promoted.stderr
        wait_for(lambda: sum(c["version"] == "iris-v5" for c in client.done) >= 20)

        refused = decider(config, "models", "promote", "iris-v3")  # needs petal length in millimetres
        assert refused.returncode != 0
        assert "needs ['petal length (mm)'], which clients do not send" in refused.stderr
        count = len(client.done)
        wait_for(lambda: len(client.done) >= count + 20)
        client.stop.set()
        client.join(15)
    assert client.errors == []
    versions = [c["version"] for c in sorted(client.done, key=lambda c: c["id"])]
    first_v5 = versions.index("iris-v5")
    assert set(versions[:first_v5]) == {"iris-v1"} and set(versions[first_v5:]) == {"iris-v5"}


def test_candidates_and_shadows_on_other_columns_and_a_refused_one(tmp_path, sqlite_url):
    models = models_with_petals(tmp_path)
    ok = write_config(tmp_path, sqlite_url, models_dir=models,
                      models='candidate = "iris-v5"\ncanary_percent = 50\nshadow = ["iris-v5"]')
    with api(load_settings(ok)) as (client, h):
        versions = {submit(client, h, record(i), key=f"k{i}")["model_version"] for i in range(40)}
        assert versions == {"iris-v1", "iris-v5"}
        # The candidate needs the petal columns, so a case without them is refused by name.
        short = client.post("/api/v1/cases", headers=h, json={"features": {"sepal length (cm)": 5.0,
                                                                           "petal width (cm)": 0.2}})
        assert short.status_code == 422 and short.json()["field"] == "features.petal length (cm)"

    bad = write_config(tmp_path, sqlite_url, models_dir=models, models='shadow = ["iris-v3"]')
    refused = subprocess.run([sys.executable, "-m", "decider", "serve", "--config", str(bad), "--port", "1"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "needs ['petal length (mm)']" in refused.stderr + refused.stdout


def test_a_version_whose_contract_differs_is_refused_both_ways(tmp_path):
    """A contract that only grew would let the next version need a field no client sends; one that shrank
    would refuse fields clients send now. Either way the switch is refused before it is recorded."""
    import numpy as np
    import pytest

    from decider.config import load_settings as settings_of
    from decider.errors import ModelRefused
    from decider.registry.deploy import check_switch
    from decider.registry.training import Dataset

    out = model_versions(tmp_path)
    iris = iris_dataset()
    grown = Dataset(np.column_stack([iris.X, iris.X[:, 2] * iris.X[:, 3]]), iris.y, [*NAMES, "petal area"],
                    iris.source)
    train(grown, name="grown", version=1, out_dir=out, estimator="logistic", use=["sepal length (cm)",
                                                                                   "petal width (cm)"])
    shrunk = Dataset(iris.X[:, [0, 3]], iris.y, [NAMES[0], NAMES[3]], iris.source)
    train(shrunk, name="shrunk", version=1, out_dir=out, estimator="logistic")
    settings = settings_of(write_config(tmp_path, "sqlite://", models_dir=out))
    with pytest.raises(ModelRefused, match=r"its contract adds \['petal area'\], which clients do not send now"):
        check_switch(settings, current="iris-v1", target="grown-v1")
    with pytest.raises(ModelRefused, match=r"its contract lacks \['sepal width \(cm\)', 'petal length \(cm\)'\]"):
        check_switch(settings, current="iris-v1", target="shrunk-v1")
    assert check_switch(settings, current="iris-v1", target="iris-v2").id == "iris-v2"


def test_check_takes_a_record_of_numbers_at_once_and_refuses_exactly_what_the_field_by_field_check_refuses():
    # Contract.check lets the usual record (known fields of a number-only contract, each a float, the required ones
    # there) through without the loop by name; on random records, with and without nullable fields, it must agree
    # with that loop.
    import random

    from decider.contract import Contract, FieldSpec
    from decider.errors import InvalidInput

    def outcome(check, record, required):  # type: ignore[no-untyped-def]
        try:
            check(record, required)
        except InvalidInput as exc:
            return exc.message, exc.field
        return None

    rnd = random.Random(3)
    names = ["a", "b", "c"]
    values = [1.5, 0.0, 2, True, False, "1.5", None]
    seen = set()
    for nullable in ((), ("b",)):
        contract = Contract({n: FieldSpec(n, nullable=n in nullable) for n in names})
        for _ in range(2000):
            record = {n: rnd.choice(values) for n in rnd.sample(names + ["x"], rnd.randint(0, 4))}
            required = tuple(rnd.sample(names, rnd.randint(0, 3)))
            verdict = outcome(contract.check, record, required)
            assert verdict == outcome(contract.refusal, record, required), record
            seen.add(verdict is None)
    assert seen == {True, False}
