"""Take docs/screenshots/case.png (the case page at 1366x900), risk-coverage.png (the training-time chart on
/admin/policy, for a model trained on make_classification) and submit-form.png (the submission form after a Try)
in headless Chromium, on throwaway databases.

    python docs/screenshots/take.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests"))

from conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from decider.config import load_settings  # noqa: E402
from helpers import PASSWORD, seed_credentials, server, write_config  # noqa: E402
from test_thresholds import write_csv  # noqa: E402

FLOWERS = [{"sepal length (cm)": 6.0, "petal width (cm)": 1.6}, {"sepal length (cm)": 8.2, "petal width (cm)": 1.7},
           {"sepal length (cm)": 6.3, "petal width (cm)": 1.5}]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp), f"sqlite:///{tmp}/d.db", level="partial")
        key = seed_credentials(load_settings(config))
        with server(config) as base, sync_playwright() as p:
            headers = {"Authorization": f"Bearer {key}"}
            for features in FLOWERS:
                httpx.post(base + "/api/v1/cases", json={"features": features}, headers=headers).raise_for_status()
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            page.goto(base + "/login")
            page.fill("#name", "alice")
            page.fill("#password", PASSWORD)
            page.keyboard.press("Enter")
            page.wait_for_url(base + "/review")
            page.click("#next-case")  # the first case, decided: on to the second, which is the one to show
            page.wait_for_url(base + "/review/cases/1")
            page.fill("#note", "Petals look longer than usual")
            page.click("#decide-form button[value=versicolor]")
            page.wait_for_url(base + "/review/cases/2")
            page.screenshot(path=str(HERE / "case.png"), full_page=False)
            browser.close()
    print(HERE / "case.png")


def risk_chart() -> None:
    from sklearn.datasets import make_classification

    from decider.registry.training import csv_dataset, train

    with tempfile.TemporaryDirectory() as tmp:
        X, y = make_classification(6000, 8, n_informative=5, n_redundant=0, class_sep=1.0, random_state=5)
        write_csv(Path(tmp) / "data.csv", X, y)
        models = Path(tmp) / "models"
        models.mkdir()
        train(csv_dataset(Path(tmp) / "data.csv", "label"), name="synthetic", version=1, out_dir=models,
              estimator="logistic")
        config = write_config(Path(tmp), f"sqlite:///{tmp}/d.db", models_dir=models, live="synthetic-v1")
        seed_credentials(load_settings(config))
        with server(config) as base, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            page.goto(base + "/login?next=/admin/policy")
            page.fill("#name", "root")
            page.fill("#password", PASSWORD)
            page.keyboard.press("Enter")
            page.wait_for_url(base + "/admin/policy")
            page.goto(base + "/admin/policy?target_error=0.05&confidence=0.95")
            page.locator("#riskchart-training").screenshot(path=str(HERE / "risk-coverage.png"))
            browser.close()
    print(HERE / "risk-coverage.png")


def submit_form() -> None:
    from sqlmodel import Session

    from decider.auth.service import add_user
    from decider.db import make_engine

    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp), f"sqlite:///{tmp}/d.db", level="partial")
        settings = load_settings(config)
        seed_credentials(settings)
        engine = make_engine(settings.database_url)
        with Session(engine) as session:
            add_user(session=session, name="sam", password=PASSWORD, role="submitter")
            session.commit()
        engine.dispose()
        with server(config) as base, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            page.goto(base + "/login")
            page.fill("#name", "sam")
            page.fill("#password", PASSWORD)
            page.keyboard.press("Enter")
            page.wait_for_url(base + "/submit")
            for name, value in {**FLOWERS[0], "sepal width (cm)": 2.9, "petal length (cm)": 4.5}.items():
                page.fill(f'[name="features.{name}"]', str(value))
            page.click("#try-case")
            page.wait_for_selector("#try-result")
            page.screenshot(path=str(HERE / "submit-form.png"), full_page=False)
            browser.close()
    print(HERE / "submit-form.png")


if __name__ == "__main__":
    main()
    risk_chart()
    submit_form()
