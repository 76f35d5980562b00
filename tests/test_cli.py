"""The decider command as a script would use it."""

from __future__ import annotations

import re
import subprocess
import sys

from decider.auth.service import client_for_key
from decider.config import load_settings
from decider.db import make_engine
from helpers import write_config


def decider(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return subprocess.run([sys.executable, "-m", "decider", *args], capture_output=True, text=True,
                          timeout=120, input=input)


def test_keys_create_prints_only_the_key(tmp_path):
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'd.db'}")
    upgraded = decider("db", "upgrade", "--config", str(config))
    assert upgraded.returncode == 0 and upgraded.stdout == ""
    assert re.fullmatch(r"database sqlite:///\S+d\.db: schema at [0-9a-f]{12}\n", upgraded.stderr), upgraded.stderr
    result = decider("keys", "create", "billing", "--config", str(config))
    assert result.returncode == 0
    key = result.stdout
    assert re.fullmatch(r"dk_[A-Za-z0-9_-]{40,}\n", key)
    engine = make_engine(load_settings(config).database_url)
    assert client_for_key(engine=engine, key=key.strip()) == "billing"
    assert decider("keys", "create", "billing", "--config", str(config)).returncode != 0
    engine.dispose()


def test_a_command_before_the_migrations_says_what_to_run(tmp_path, db_url):
    config = write_config(tmp_path, db_url)
    for args in (("keys", "create", "billing"), ("keys", "list"), ("users", "list")):
        result = decider(*args, "--config", str(config))
        assert result.returncode == 2, result.stderr
        assert "decider db upgrade" in result.stderr and "Traceback" not in result.stderr
    assert decider("db", "upgrade", "--config", str(config)).returncode == 0
    assert decider("keys", "create", "billing", "--config", str(config)).returncode == 0


def test_users_add_validates_role(tmp_path):
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'd.db'}")
    decider("db", "upgrade", "--config", str(config))
    ok = decider("users", "add", "carol", "--role", "admin", "--password", "long enough pw", "--config", str(config))
    assert ok.returncode == 0
    bad = decider("users", "add", "dave", "--role", "boss", "--password", "long enough pw", "--config", str(config))
    assert bad.returncode == 2 and "reviewer, admin" in bad.stderr


def test_train_writes_a_new_version(tmp_path):
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'd.db'}")
    config.write_text(config.read_text().replace('dir = "', f'dir = "{tmp_path}/m" #'))
    result = decider("train", "--config", str(config))
    assert result.returncode == 0 and result.stdout == "iris-v1\n"
    result = decider("train", "--config", str(config))
    assert result.stdout == "iris-v2\n"
    assert (tmp_path / "m" / "iris-v2.skops").exists() and (tmp_path / "m" / "iris-v2.json").exists()
