"""The operator's commands: ``inventory`` reads the database it is pointed at and never
creates one; ``paths`` names files that exist; the demo's settings file points both at
the demo."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import yaml

from api.cli import main
from api.settings import Settings, load_settings, require_shared_secret
from lambda_testbed.demo import shared_secret_key, write_settings_file
from lambda_testbed.demo_data import DEMO_INSTANCE_ID, demo_seed


def test_inventory_of_a_missing_database_is_one_line_and_creates_nothing(in_empty_dir, capsys):
    assert main(["inventory", DEMO_INSTANCE_ID]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(in_empty_dir / "lambda.db") in err  # which database was read
    assert "--config" in err and "LAMBDA_DATABASE_URL" in err  # how to name another
    assert list(in_empty_dir.iterdir()) == []  # no lambda.db, no .lambda/


def test_inventory_of_an_empty_database_is_one_line_and_changes_nothing(in_empty_dir, capsys,
                                                                       monkeypatch):
    empty = in_empty_dir / "empty.db"
    empty.touch()
    monkeypatch.setenv("LAMBDA_DATABASE_URL", f"sqlite:///{empty}")
    assert main(["inventory", DEMO_INSTANCE_ID]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "empty.db" in err and "holds no lambda instances" in err
    assert sorted(p.name for p in in_empty_dir.iterdir()) == ["empty.db"]
    assert empty.stat().st_size == 0


def seeded_demo_config(state_dir: Path) -> Path:
    """What ``lambda-service demo`` leaves: its settings file and its database, seeded (by
    a process of its own, whose files are closed when it ends)."""
    state_dir.mkdir(parents=True)
    settings = Settings(database_url=f"sqlite:///{state_dir / 'lambda.db'}",
                        ansible_connection="local", state_dir=str(state_dir),
                        extravars_file=str(state_dir / "extravars.yml"),
                        auth_url="http://127.0.0.1:9/identity/v2.0")
    config = write_settings_file(settings, state_dir / "lambda.yml")
    seed = state_dir.parent / "seed.yml"
    seed.write_text(yaml.safe_dump(demo_seed(1)))
    subprocess.run([sys.executable, "-m", "api.cli", "--config", str(config), "seed",
                    str(seed)], check=True, timeout=60, capture_output=True)
    seed.unlink()
    return config


def test_inventory_with_the_demos_settings_file_renders_its_local_hosts(in_empty_dir, capsys):
    config = seeded_demo_config(in_empty_dir / ".lambda" / "demo")
    loaded = load_settings(config_file=str(config))
    assert loaded.ansible_connection == "local"
    before = sorted(p.name for p in config.parent.iterdir())
    # In a process of its own, as an operator runs it: what it leaves is what it made.
    subprocess.run([sys.executable, "-m", "api.cli", "--config", ".lambda/demo/lambda.yml",
                    "inventory", DEMO_INSTANCE_ID, "-o", "hosts.ini"], check=True,
                   timeout=60)
    assert sorted(p.name for p in config.parent.iterdir()) == before
    text = (in_empty_dir / "hosts.ini").read_text()
    assert "ansible_connection=local" in text
    assert "lambda-1-master ansible_host=127.42.1.1" in text


def test_inventory_of_an_unknown_instance_names_the_database(in_empty_dir, capsys):
    seeded_demo_config(in_empty_dir / ".lambda" / "demo")
    other = "00000000-0000-4000-8000-000000000099"
    assert main(["--config", ".lambda/demo/lambda.yml", "inventory", other]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and other in err and "lambda.db" in err


def test_paths_names_files_that_exist(in_empty_dir, capsys):
    assert main(["paths"]) == 0
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert set(lines) == {"playbooks", "roles", "inventory_template", "ansible_cfg",
                          "database", "state_dir"}
    assert (Path(lines["playbooks"]) / "lambda-start.yml").is_file()
    assert (Path(lines["roles"]) / "hadoop").is_dir()
    assert Path(lines["inventory_template"]).is_file()
    assert Path(lines["ansible_cfg"]).is_file()
    assert lines["database"] == f"sqlite:///{in_empty_dir / 'lambda.db'}"
    assert main(["paths", "ansible_cfg"]) == 0
    assert capsys.readouterr().out == lines["ansible_cfg"] + "\n"
    assert list(in_empty_dir.iterdir()) == []


def test_a_scaled_out_demo_shares_one_key_through_its_private_settings_file(tmp_path):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'lambda.db'}",
                        dispatcher="celery", state_dir=str(tmp_path))
    key = shared_secret_key(settings, tmp_path)
    assert key and shared_secret_key(settings, tmp_path) == key  # the same key next time
    config = write_settings_file(settings.replace(secret_key=key), tmp_path / "lambda.yml")
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    worker = load_settings({"LAMBDA_DISPATCHER": "celery"}, config_file=str(config))
    assert worker.secret_keys == [key]
    require_shared_secret(worker)  # a worker started on the file is not refused
    local = settings.replace(dispatcher="local")
    assert shared_secret_key(local, tmp_path / "other") is None  # embedded: its key file
