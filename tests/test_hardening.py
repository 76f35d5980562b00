"""Inputs found by review to reach a 500 or to leak: each is now a clear 4xx, and secrets stay out."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from decider.cases.ingest import Ingestor
from decider.cases.service import Submission
from decider.cases.tables import Case
from decider.config import ConfigError, load_settings
from decider.runtime import Runtime
from helpers import AMBIGUOUS, SETOSA, api, review_headers, settings_for

EXTREME = {"sepal length (cm)": 1e308, "petal width (cm)": -1e308}  # finite, but the model overflows


def stored(engine) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(Case)).scalar_one()


def test_values_the_model_cannot_score_are_stored_and_go_to_a_person(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url, level="full")) as (client, h):
        response = client.post("/api/v1/cases", json={"features": EXTREME}, headers=h)
        assert response.status_code == 201, response.text
        case = response.json()
        assert case["route"] == "queue" and case["prediction"] is None and case["model_version"] == "iris-v1"
        assert case["novelty"][-1]["kind"] == "unscorable" and "not finite" in case["novelty"][-1]["message"]
        assert stored(client.app.state.runtime.engine) == 1


def test_one_bad_submission_does_not_fail_its_batch(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, _):
        runtime: Runtime = client.app.state.runtime
        ingestor = Ingestor(runtime)
        # Past the API's checks (as a bug could let it through): a value that is not a number.
        bad = Submission("t", {"sepal length (cm)": "five", "petal width (cm)": 0.2}, None)  # type: ignore[dict-item]
        subs = [Submission("t", SETOSA, None), bad, Submission("t", AMBIGUOUS, None)]

        async def all_at_once():  # type: ignore[no-untyped-def]
            # gather queues all three before the writer runs, so they form one batch
            return await asyncio.gather(*(ingestor.submit(s) for s in subs), return_exceptions=True)

        with ThreadPoolExecutor(1) as pool:  # a loop of its own: the browser fixture may hold this thread's
            results = pool.submit(lambda: asyncio.run(all_at_once())).result()
        assert isinstance(results[1], ValueError)
        assert results[0][1] and results[2][1]  # the two good ones were created
        assert stored(runtime.engine) == 2


@pytest.mark.parametrize("path", ["/api/v1/cases/99999999999999999999", "/api/v1/review/cases/9223372036854775808",
                                  "/api/v1/cases/0"])
def test_case_ids_out_of_range_are_422(tmp_path, sqlite_url, path):
    with api(settings_for(tmp_path, sqlite_url)) as (client, h):
        response = client.get(path, headers=review_headers(client) if "/review/" in path else h)
        assert response.status_code == 422 and response.json()["field"] == "path.case_id"


def test_monitoring_window_at_the_edge_of_time_is_422(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, h):
        admin = review_headers(client, "root")
        response = client.get("/api/v1/monitoring", params={"since": "0001-01-01T00:00:00+01:00"}, headers=admin)
        assert response.status_code == 422 and "out of range" in response.json()["detail"]


def test_config_errors_never_echo_what_may_be_a_secret(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[server]\nsecret_key = "hunter2"\n[database]\nuri = "postgresql://u:PASSWORD@db/x"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(config)
    message = str(err.value)
    assert "server.secret_key" in message and "database.uri" in message
    assert "hunter2" not in message and "PASSWORD" not in message


def test_every_naive_time_the_schema_allows_is_one_the_server_takes():
    """schemathesis sent `since=0000-00-00T00:00`, which the old pattern allowed and the server refused."""
    import re
    from datetime import datetime

    from decider.monitoring.views import NAIVE_TIME

    pattern = re.compile(NAIVE_TIME)
    for text in ("0000-00-00T00:00", "2026-02-30T00:00", "2026-04-31 12:00", "2026-13-01T00:00", "2026-11-25T24:00"):
        assert not pattern.match(text), text
    for text in ("0001-01-01T00:00", "2026-02-28T23:59:59.999999", "2026-12-31 10:00", "9999-12-31T23:59:59"):
        assert pattern.match(text) and datetime.fromisoformat(text), text


def test_a_value_one_model_refuses_leaves_the_rest_of_its_batch_scored(tmp_path, sqlite_url):
    """A forest refuses values past float32's range; only the case that carries one goes to a person."""
    from decider.registry.training import iris_dataset, train
    from helpers import write_config

    models = tmp_path / "models"
    train(iris_dataset(), name="forest", version=1, out_dir=models, estimator="random_forest",
          use=["sepal length (cm)", "petal width (cm)"])
    config = write_config(tmp_path, sqlite_url, models_dir=models, live="forest-v1", level="full")
    with api(load_settings(config)) as (client, _):
        runtime: Runtime = client.app.state.runtime
        ingestor = Ingestor(runtime)
        huge = {"sepal length (cm)": 1e39, "petal width (cm)": 0.2}
        subs = [Submission("t", SETOSA, None), Submission("t", huge, None)]

        async def together():  # type: ignore[no-untyped-def]
            return await asyncio.gather(*(ingestor.submit(s) for s in subs))

        with ThreadPoolExecutor(1) as pool:
            (ordinary, _), (refused, _) = pool.submit(lambda: asyncio.run(together())).result()
    assert ordinary["route"] == "auto" and ordinary["novelty"] == []
    assert refused["route"] == "queue" and refused["novelty"][-1]["kind"] == "unscorable"


def test_a_field_missing_at_scoring_time_is_never_imputed_into_a_decision(tmp_path, sqlite_url):
    """The API checks required fields against the deployment it sees; a switch can land before scoring. A
    missing value the contract never allows is then a reason to queue, not a median to decide on."""
    with api(settings_for(tmp_path, sqlite_url, level="full")) as (client, _):
        runtime: Runtime = client.app.state.runtime
        from decider.cases.service import score_batch

        [row] = score_batch(runtime, [Submission("t", {"sepal length (cm)": 5.0}, None)])
    assert row["route"] == "queue" and row["novelty"] == [
        {"kind": "unscorable", "feature": "petal width (cm)", "message": "petal width (cm) is missing"}]
