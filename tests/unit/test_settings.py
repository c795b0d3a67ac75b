"""Settings: environment over YAML over ~/.kamakirc over defaults."""

from __future__ import annotations

import pytest

from api.settings import (
    SECRET_VARIABLES,
    SettingsError,
    kamakirc_auth_url,
    load_settings,
    require_shared_secret,
)

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
    ({"LAMBDA_LOG_FORMAT": "xml"}, "LAMBDA_LOG_FORMAT must be one of text, json"),
    ({"LAMBDA_METRICS_ALLOW": "127.0.0.1/32,10.0.0.0/33"}, "'10.0.0.0/33' is not an"),
    ({"LAMBDA_WORKER_METRICS_BIND": "9465"}, "must be HOST:PORT"),
    ({"LAMBDA_CHECKS": "warn"}, "LAMBDA_CHECKS must be one of enforce, report, off"),
])
def test_bad_settings_are_clear_errors(env, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(env)


def test_metrics_settings_default_to_loopback_and_empty_turns_them_off():
    settings = load_settings({})
    assert [str(n) for n in settings.metrics_allow_networks] == ["127.0.0.1/32", "::1/128"]
    assert settings.worker_metrics_bind == "127.0.0.1:9465"
    off = load_settings({"LAMBDA_METRICS_ALLOW": "", "LAMBDA_WORKER_METRICS_BIND": ""})
    assert off.metrics_allow_networks == [] and off.worker_metrics_bind is None
    assert load_settings({"LAMBDA_WORKER_METRICS_BIND": "[::1]:9465"}).worker_metrics_bind


def test_unknown_yaml_key_is_an_error(tmp_path):
    config = tmp_path / "lambda.yml"
    config.write_text("pool_sise: 3\n")
    with pytest.raises(SettingsError, match="unknown setting 'pool_sise'"):
        load_settings({"LAMBDA_CONFIG": str(config)})


@pytest.mark.parametrize(("raw", "value"), [("1", True), ("on", True), ("True", True),
                                            ("0", False), ("off", False), ("no", False)])
def test_boolean_settings_read_the_usual_words(raw, value):
    assert load_settings({"LAMBDA_BROKER_CONFIRM": raw}).broker_confirm is value


KEY_1 = "x0RkaNHdNUONRAMtHAeX9nYhzQTw7lEgtgVdEOTXn4s="
KEY_2 = "VDbzZgo7GCHufq0EDm3lI2HvrS5N3_IZVgbCLHwzbUM="


def test_secret_key_takes_one_key_or_several_the_first_encrypting():
    assert load_settings({"LAMBDA_SECRET_KEY": KEY_1}).secret_keys == [KEY_1]
    several = load_settings({"LAMBDA_SECRET_KEY": f" {KEY_2}, {KEY_1} "})
    assert several.secret_keys == [KEY_2, KEY_1]
    assert load_settings({}).secret_keys == []


@pytest.mark.parametrize(("raw", "message"), [
    ("not-a-key", "LAMBDA_SECRET_KEY: its key is not a Fernet key"),
    (f"{KEY_1},not-a-key", "LAMBDA_SECRET_KEY: key 2 of 2 is not a Fernet key"),
    (KEY_1[:-4], "its key is not a Fernet key"),  # 29 bytes, not 32
    (" , ", "holds no key"),
])
def test_a_bad_secret_key_is_a_clear_error_that_does_not_echo_it(raw, message):
    with pytest.raises(SettingsError, match=message) as caught:
        load_settings({"LAMBDA_SECRET_KEY": raw})
    assert "not-a-key" not in str(caught.value) and KEY_1[:-4] not in str(caught.value)


def test_the_secret_key_is_not_in_the_settings_repr():
    assert KEY_1 not in repr(load_settings({"LAMBDA_SECRET_KEY": KEY_1}))


@pytest.mark.parametrize(("env", "why"), [
    ({"LAMBDA_DISPATCHER": "celery"}, "when LAMBDA_DISPATCHER is celery"),
    ({"LAMBDA_DATABASE_URL": "postgresql+psycopg://lambda@db.example.org/lambda"},
     "when the database is not a local SQLite file"),
])
def test_scaled_out_settings_require_a_shared_secret_key(env, why):
    settings = load_settings(env)
    assert settings.scaled_out
    with pytest.raises(SettingsError, match=f"LAMBDA_SECRET_KEY is required {why}"):
        require_shared_secret(settings)
    require_shared_secret(load_settings({**env, "LAMBDA_SECRET_KEY": KEY_1}))


def test_the_embedded_default_needs_no_secret_key(tmp_path):
    settings = load_settings({"LAMBDA_DATABASE_URL": f"sqlite:///{tmp_path / 'l.db'}"})
    assert not settings.scaled_out
    require_shared_secret(settings)


def test_ansible_env_names_further_variables_but_never_a_credential():
    names = load_settings({"LAMBDA_ANSIBLE_ENV": "JAVA_OPTS, MY_TAG"}).ansible_env_names
    assert names == ["JAVA_OPTS", "MY_TAG"]
    for name in SECRET_VARIABLES:
        with pytest.raises(SettingsError, match=f"{name} holds a credential"):
            load_settings({"LAMBDA_ANSIBLE_ENV": f"MY_TAG,{name}"})
    with pytest.raises(SettingsError, match="is not a variable name"):
        load_settings({"LAMBDA_ANSIBLE_ENV": "A=B"})
