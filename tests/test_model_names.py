"""Model names are names: never a path out of `models.dir`, never a symlink out of it, never a card for another
file, and a `models.dir` edit on a running server is reported instead of silently ignored."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from decider.automation.reload import Watcher
from decider.cli import app as cli_app
from decider.config import ConfigError, load_settings
from decider.db import make_engine, upgrade
from decider.errors import ModelRefused
from decider.registry import deploy
from decider.registry.artifacts import load
from decider.registry.names import name_problem
from decider.runtime import Runtime
from helpers import MODELS, logged, model_versions, settings_for, write_config


def copy_model(src_dir: Path, src_id: str, dest_dir: Path, dest_id: str, *, card_id: str | None = None) -> None:
    """`src_id`'s artifact and card as `dest_id` in `dest_dir`, the card saying `card_id` (default: dest_id).
    The artifact is byte for byte the same, so its sha256 still matches the card."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(src_dir / f"{src_id}.skops", dest_dir / f"{dest_id}.skops")
    card = json.loads((src_dir / f"{src_id}.json").read_text())
    card["id"] = dest_id if card_id is None else card_id
    (dest_dir / f"{dest_id}.json").write_text(json.dumps(card))


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A perfectly valid model, 'evil', in a folder beside (not inside) models.dir: before the fix, a path
    to it was served."""
    folder = tmp_path / "outside"
    copy_model(MODELS, "iris-v1", folder, "evil")
    return folder


def history(config: Path) -> list[str]:
    engine = make_engine(load_settings(config).database_url)
    with engine.connect() as conn:
        ids = [h["model_id"] for h in deploy.history(conn)]
    engine.dispose()
    return ids


# --- the rule itself ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["iris-v1", "churn_v2", "a", "Model.2024-01-v3", "x" * 100])
def test_plain_names_are_names(name):
    assert name_problem(name) is None


@pytest.mark.parametrize("name", ["", "..", "../x", "a/b", "/etc/passwd", "a\\b", ".hidden", "-rf", "a..b",
                                  "iris-v1\n", "iris v1", "x" * 101, "ü", "iris-v1\x00"])
def test_anything_else_is_not(name):
    assert name_problem(name) is not None
    with pytest.raises(ModelRefused, match="not a model name"):
        load(MODELS, name)


# --- promote (the command) ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["relative", "absolute", "slash"])
def test_promote_refuses_paths(tmp_path, sqlite_url, outside, kind):
    models = tmp_path / "models"
    copy_model(MODELS, "iris-v1", models, "iris-v1")
    (models / "sub").mkdir()
    copy_model(MODELS, "iris-v1", models / "sub", "evil")  # inside models.dir, but still a path
    config = write_config(tmp_path, sqlite_url, models_dir=models)
    name = {"relative": "../outside/evil", "absolute": str(outside / "evil"), "slash": "sub/evil"}[kind]
    result = CliRunner().invoke(cli_app, ["models", "promote", name, "-c", str(config)], env={"USER": "mallory"})
    assert result.exit_code == 2, result.output
    assert "not a model name" in result.stderr and repr(name) in result.stderr
    assert "the live model is unchanged" in result.stderr
    assert history(config) == []  # nothing recorded: iris-v1 stays live


def test_promote_refusal_as_an_operator_sees_it(tmp_path, sqlite_url, outside):
    config = write_config(tmp_path, sqlite_url, models_dir=tmp_path / "models")
    copy_model(MODELS, "iris-v1", tmp_path / "models", "iris-v1")
    command = [sys.executable, "-m", "decider", "models", "promote", "../outside/evil", "-c", str(config)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("decider: model '../outside/evil': not a model name")
    assert "Traceback" not in result.stderr and result.stdout == ""


# --- the config --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("models", "key", "bad"), [
    ('live = "../x"', "models.live", "../x"),
    ('live = "/etc/passwd"', "models.live", "/etc/passwd"),
    ('live = "iris-v1"\ncandidate = "a/b"', "models.candidate", "a/b"),
    ('live = "iris-v1"\nshadow = ["iris-v1", "../../x"]', "models.shadow.1", "../../x"),
])
def test_a_path_in_the_config_is_a_config_error_naming_the_key(tmp_path, sqlite_url, models, key, bad):
    config = write_config(tmp_path, sqlite_url)
    config.write_text(config.read_text().replace('live = "iris-v1"', models))
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    message = str(caught.value)
    assert message.startswith(f"config key {key}: ") and "not a model name" in message and repr(bad) in message
    result = CliRunner().invoke(cli_app, ["models", "list", "-c", str(config)])
    assert result.exit_code == 2 and f"config key {key}" in result.stderr


def test_a_path_from_the_environment_is_refused_too(tmp_path, sqlite_url, monkeypatch):
    monkeypatch.setenv("DECIDER_MODELS__LIVE", "../x")
    with pytest.raises(ConfigError, match="config key models.live"):
        settings_for(tmp_path, sqlite_url)


def test_an_empty_candidate_still_means_none(tmp_path, sqlite_url):
    settings = settings_for(tmp_path, sqlite_url, models='candidate = ""\nshadow = []')
    assert settings.models.candidate == "" and settings.models.shadow == []


# --- symlinks and cards ------------------------------------------------------------------------------------

@pytest.mark.parametrize("linked", [(".skops", ".json"), (".skops",), (".json",)])
def test_a_symlink_out_of_models_dir_is_refused(tmp_path, outside, linked):
    models = tmp_path / "models"
    copy_model(outside, "evil", models, "evil")  # real files first, then some replaced by links outward
    for suffix in linked:
        (models / f"evil{suffix}").unlink()
        (models / f"evil{suffix}").symlink_to(outside / f"evil{suffix}")
    with pytest.raises(ModelRefused, match="outside the models folder") as caught:
        load(models, "evil")
    assert str(outside) in caught.value.message  # says where the link goes


def test_a_linked_models_dir_and_links_inside_it_still_load(tmp_path):
    real = tmp_path / "real"
    copy_model(MODELS, "iris-v1", real, "iris-v1")
    copy_model(MODELS, "iris-v1", real / "store", "iris-v5")
    for suffix in (".skops", ".json"):  # a link that stays inside the folder is fine
        (real / f"iris-v5{suffix}").symlink_to(real / "store" / f"iris-v5{suffix}")
    (tmp_path / "models").symlink_to(real)
    assert load(tmp_path / "models", "iris-v1").id == "iris-v1"
    assert load(tmp_path / "models", "iris-v5").id == "iris-v5"


def test_a_symlink_out_is_refused_by_promote(tmp_path, sqlite_url, outside):
    models = tmp_path / "models"
    copy_model(MODELS, "iris-v1", models, "iris-v1")
    for suffix in (".skops", ".json"):
        (models / f"evil{suffix}").symlink_to(outside / f"evil{suffix}")
    config = write_config(tmp_path, sqlite_url, models_dir=models)
    result = CliRunner().invoke(cli_app, ["models", "promote", "evil", "-c", str(config)])
    assert result.exit_code == 2 and "outside the models folder" in result.stderr, result.output
    assert history(config) == []


@pytest.mark.parametrize("card_id", ["iris-v1", None, "../iris-v7"])
def test_a_card_for_another_id_is_refused(tmp_path, card_id):
    copy_model(MODELS, "iris-v1", tmp_path, "iris-v7", card_id=card_id or "")
    if card_id is None:  # a card with no id at all
        card = json.loads((tmp_path / "iris-v7.json").read_text())
        del card["id"]
        (tmp_path / "iris-v7.json").write_text(json.dumps(card))
    with pytest.raises(ModelRefused, match=r"its card iris-v7\.json says id") as caught:
        load(tmp_path, "iris-v7")
    assert repr(card_id) in caught.value.message


def test_a_renamed_version_is_refused_by_promote_and_a_matching_one_passes(tmp_path, sqlite_url):
    models = model_versions(tmp_path)
    for suffix in (".skops", ".json"):  # iris-v2's files under the name iris-v5: its card still says iris-v2
        shutil.copy(models / f"iris-v2{suffix}", models / f"iris-v5{suffix}")
    config = write_config(tmp_path, sqlite_url, models_dir=models)
    refused = CliRunner().invoke(cli_app, ["models", "promote", "iris-v5", "-c", str(config)])
    assert refused.exit_code == 2 and "says id 'iris-v2', not 'iris-v5'" in refused.stderr, refused.output
    promoted = CliRunner().invoke(cli_app, ["models", "promote", "iris-v2", "-c", str(config)])
    assert promoted.exit_code == 0, promoted.output
    assert history(config) == ["iris-v2", "iris-v1"]


def test_the_bundled_cards_name_their_files():
    for card_file in MODELS.glob("*.json"):
        assert json.loads(card_file.read_text())["id"] == card_file.stem


# --- models.dir edited under a running server --------------------------------------------------------------

def test_a_models_dir_edit_is_reported_and_the_old_dir_keeps_serving(tmp_path, sqlite_url):
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    copy_model(MODELS, "iris-v1", old_dir, "iris-v1")
    copy_model(MODELS, "iris-v1", new_dir, "iris-v1")
    copy_model(MODELS, "iris-v1", new_dir, "iris-v5")  # only in the new folder
    config = write_config(tmp_path, sqlite_url, models_dir=old_dir)
    settings = load_settings(config)
    upgrade(settings.database_url)
    runtime = Runtime.start(settings, make_engine(settings.database_url))
    watcher = Watcher(runtime, config, on_config=[deploy.refresh])
    deployment = runtime.deployment

    config.write_text(config.read_text().replace(str(old_dir), str(new_dir)))
    with logged() as lines:
        assert watcher.check()  # the rest of the edit is accepted
    assert runtime.settings.models_dir == old_dir
    assert runtime.deployment is deployment
    assert any("models.dir changed; that takes effect on restart" in x for x in lines), lines
    problem = runtime.problems["restart"]  # what /readyz reports
    assert "models.dir" in problem and "restart" in problem and str(old_dir) in problem

    # A version only the new folder has is looked for in the folder in force, and refused there.
    config.write_text(config.read_text().replace('live = "iris-v1"', 'live = "iris-v5"'))
    assert watcher.check()
    assert runtime.deployment is deployment and runtime.deployment.live.id == "iris-v1"
    assert "iris-v5" in runtime.problems["models"] and str(old_dir) in runtime.problems["models"]
    assert "models.dir" in runtime.problems["restart"]

    # Undoing the edit clears both reports.
    config.write_text(config.read_text().replace(str(new_dir), str(old_dir)).replace("iris-v5", "iris-v1"))
    assert watcher.check()
    assert "restart" not in runtime.problems and "models" not in runtime.problems
    assert runtime.deployment.live.id == "iris-v1"
    runtime.engine.dispose()


def test_the_same_folder_spelt_differently_is_not_a_change(tmp_path, sqlite_url):
    models = tmp_path / "models"
    copy_model(MODELS, "iris-v1", models, "iris-v1")
    config = write_config(tmp_path, sqlite_url, models_dir=models)
    settings = load_settings(config)
    upgrade(settings.database_url)
    runtime = Runtime.start(settings, make_engine(settings.database_url))
    watcher = Watcher(runtime, config, on_config=[deploy.refresh])
    config.write_text(config.read_text().replace(f'dir = "{models}"', 'dir = "./models"'))
    assert watcher.check()
    assert "restart" not in runtime.problems and runtime.settings.models_dir == models
    runtime.engine.dispose()


def test_a_card_that_is_not_json_is_listed_as_refused_not_a_crash(tmp_path, sqlite_url):
    models = tmp_path / "models"
    copy_model(MODELS, "iris-v1", models, "iris-v1")
    copy_model(MODELS, "iris-v1", models, "broken-v1")
    (models / "broken-v1.json").write_text("{ not json")
    config = write_config(tmp_path, sqlite_url, models_dir=models)
    result = subprocess.run([sys.executable, "-m", "decider", "models", "list", "-c", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "broken-v1  (no role)" in result.stdout and "its card cannot be read (JSONDecodeError)" in result.stdout
    assert "iris-v1  [live]" in result.stdout
