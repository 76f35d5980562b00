"""config.toml and its environment overrides; bad values stop start-up with the key named."""

from __future__ import annotations

import subprocess
import sys

import pytest

from decider.config import ConfigError, load_settings
from decider.policy import Level
from helpers import write_config


def test_file_values_and_env_overrides(tmp_path, monkeypatch):
    config = write_config(tmp_path, "sqlite:///x.db", automation="class_thresholds = { setosa = 0.7 }")
    settings = load_settings(config)
    assert settings.automation.level is Level.PARTIAL
    assert settings.automation.class_thresholds == {"setosa": 0.7}
    assert settings.database_url == f"sqlite:///{tmp_path / 'x.db'}"  # relative to the config file
    monkeypatch.setenv("DECIDER_AUTOMATION__LEVEL", "assist")
    monkeypatch.setenv("DECIDER_AUTOMATION__THRESHOLD", "0.75")
    settings = load_settings(config)
    assert (settings.automation.level, settings.automation.threshold) == (Level.ASSIST, 0.75)


@pytest.mark.parametrize(
    ("automation", "key", "hint"),
    [
        ('level = "sometimes"', "automation.level", "human_only"),
        ("threshold = 1.5", "automation.threshold", "less than or equal to 1"),
        ("class_thresholds = { setosa = -0.1 }", "automation.class_thresholds.setosa", "greater than or equal"),
        ("thresold = 0.5", "automation.thresold", "Extra inputs"),
    ],
)
def test_bad_values_name_the_key(tmp_path, automation, key, hint):
    config = tmp_path / "config.toml"
    config.write_text(f"[automation]\n{automation}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(config)
    assert key in str(err.value) and hint in str(err.value)


def test_serve_refuses_to_start_with_one_line_naming_the_problem(tmp_path):
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'd.db'}", models='candidate = ""\n')
    config.write_text(config.read_text().replace('live = "iris-v1"', 'live = "nope-v9"'))
    result = subprocess.run([sys.executable, "-m", "decider", "serve", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "nope-v9" in result.stderr and "available: iris-v1" in result.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[automation]\nlevel = "sometimes"\n')
    result = subprocess.run([sys.executable, "-m", "decider", "serve", "--config", str(bad)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "automation.level" in result.stderr
