"""The baseline the ingest benchmark compares with: a plain Flask app under waitress that scores the
same model per request and stores nothing. Run by bench/ingest.py; not part of decider."""

from __future__ import annotations

import sys
from pathlib import Path

from flask import Flask, jsonify, request
from waitress import serve

from decider.registry.artifacts import load

model = load(Path(sys.argv[2]), "iris-v1")
app = Flask(__name__)


@app.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    return {"status": "ok"}


@app.post("/predict")
def predict():  # type: ignore[no-untyped-def]
    features = request.get_json()["features"]
    probs = model.predict_proba([[features[name] for name in model.features]])[0]
    return jsonify({label: float(p) for label, p in zip(model.labels, probs, strict=True)})


if __name__ == "__main__":
    serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=8, _quiet=True)
