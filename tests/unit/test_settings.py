"""Settings: environment over YAML over ~/.kamakirc over defaults."""

from __future__ import annotations

import pytest

from api.settings import SettingsError, kamakirc_auth_url, load_settings

KAMAKIRC = """[global]
default_cloud = okeanos

[cloud "other"]
url = https://other.example.org/identity/v2.0

[cloud "okeanos"]
url = https://accounts.okeanos.grnet.gr/identity/v2.0
token = secret-token
"""


def test_kamakirc_default_cloud_is_the_auth_url(tmp_path, monkeypatch):
    rc = tmp_path / ".kamakirc"
    rc.write_text(KAMAKIRC)
    monkeypatch.setenv("KAMAKIRC", str(rc))
    assert kamakirc_auth_url() == "https://accounts.okeanos.grnet.gr/identity/v2.0"
    assert load_settings({}).auth_url == "https://accounts.okeanos.grnet.gr/identity/v2.0"
    env = {"LAMBDA_AUTH_URL": "http://127.0.0.1:9100/identity/v2.0"}
    assert load_settings(env).auth_url == env["LAMBDA_AUTH_URL"]


def test_missing_or_broken_kamakirc_gives_none(tmp_path):
    assert kamakirc_auth_url(tmp_path / "none") is None
    broken = tmp_path / "broken"
    broken.write_text("this is [not ini")
    assert kamakirc_auth_url(broken) is None


def test_yaml_file_then_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("KAMAKIRC", str(tmp_path / "absent"))
    config = tmp_path / "lambda.yml"
    config.write_text("pool_size: 7\nbind: 0.0.0.0:9000\ndispatcher: celery\n")
    settings = load_settings({"LAMBDA_CONFIG": str(config), "LAMBDA_POOL_SIZE": "2"})
    assert (settings.pool_size, settings.bind, settings.dispatcher) == (2, "0.0.0.0:9000",
                                                                        "celery")


@pytest.mark.parametrize(("env", "message"), [
    ({"LAMBDA_POOL_SIZE": "many"}, "not a number"),
    ({"LAMBDA_DISPATCHER": "rq"}, "local or celery"),
    ({"LAMBDA_ANSIBLE_CONNECTION": "winrm"}, "ssh or local"),
    ({"LAMBDA_ANSIBLE_STRATEGY": "free"}, "auto, mitogen_linear, linear"),
    ({"LAMBDA_BROKER_CONFIRM": "maybe"}, "not true or false"),
    ({"LAMBDA_CONFIG": "/nonexistent/lambda.yml"}, "cannot read"),
])
def test_bad_settings_are_clear_errors(env, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(env)


def test_unknown_yaml_key_is_an_error(tmp_path):
    config = tmp_path / "lambda.yml"
    config.write_text("pool_sise: 3\n")
    with pytest.raises(SettingsError, match="unknown setting 'pool_sise'"):
        load_settings({"LAMBDA_CONFIG": str(config)})


@pytest.mark.parametrize(("raw", "value"), [("1", True), ("on", True), ("True", True),
                                            ("0", False), ("off", False), ("no", False)])
def test_boolean_settings_read_the_usual_words(raw, value):
    assert load_settings({"LAMBDA_BROKER_CONFIRM": raw}).broker_confirm is value
