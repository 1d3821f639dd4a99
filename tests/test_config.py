"""Configuration is read once from the environment and checked at start-up."""

from __future__ import annotations

import pytest

from florent.config import ConfigError, read_settings, sqlalchemy_url


def test_defaults_are_development_with_a_default_model():
    settings = read_settings({})
    assert settings.env == "development"
    assert settings.model == "florent-gpt-4"
    assert settings.database_url is None and settings.jwks_url is None


@pytest.mark.parametrize(
    ("environ", "missing"),
    [
        ({}, ["DATABASE_URL", "SECRET_KEY", "WORKOS_JWKS_URL", "WORKOS_ISSUER"]),
        ({"DATABASE_URL": "postgresql://db/x", "SECRET_KEY": "s"}, ["WORKOS_JWKS_URL"]),
        ({"DATABASE_URL": "postgresql://db/x", "WORKOS_CLIENT_ID": "c"}, ["SECRET_KEY"]),
        ({"SECRET_KEY": "s", "WORKOS_JWKS_URL": "https://x/jwks"}, ["DATABASE_URL"]),
        (
            {"DATABASE_URL": "postgresql://db/x", "SECRET_KEY": "s", "WORKOS_CLIENT_ID": "c"},
            ["WORKOS_ISSUER"],
        ),
    ],
)
def test_production_refuses_to_start_and_names_what_is_missing(environ, missing):
    with pytest.raises(ConfigError) as error:
        read_settings({"FLORENT_ENV": "production", **environ})
    for name in missing:
        assert name in str(error.value)


PRODUCTION = {
    "FLORENT_ENV": "production",
    "DATABASE_URL": "postgresql://db/x",
    "SECRET_KEY": "s",
    "WORKOS_ISSUER": "https://api.workos.com",
}


@pytest.mark.parametrize(
    "url", ["http://auth.example.com/jwks", "http://10.0.0.5/jwks", "http://[::ffff:8.8.8.8]/k"]
)
def test_production_refuses_keys_fetched_in_the_clear(url):
    with pytest.raises(ConfigError, match="https"):
        read_settings({**PRODUCTION, "WORKOS_JWKS_URL": url})


@pytest.mark.parametrize(
    "url",
    [
        "https://auth.example.com/jwks",
        "http://127.0.0.1:8001/jwks",
        "http://localhost/k",
        "http://[::1]:9/k",
    ],
)
def test_production_takes_https_or_a_loopback_jwks(url):
    assert read_settings({**PRODUCTION, "WORKOS_JWKS_URL": url}).jwks_url == url


def test_jwks_url_from_client_id_and_explicit_url_wins():
    assert read_settings({"WORKOS_CLIENT_ID": "client_1"}).jwks_url == (
        "https://api.workos.com/sso/jwks/client_1"
    )
    explicit = read_settings(
        {"WORKOS_CLIENT_ID": "client_1", "WORKOS_JWKS_URL": "http://127.0.0.1/k"}
    )
    assert explicit.jwks_url == "http://127.0.0.1/k"


def test_unknown_environment_is_refused():
    with pytest.raises(ConfigError, match="FLORENT_ENV"):
        read_settings({"FLORENT_ENV": "staging"})


def test_a_non_http_jwks_url_is_refused():
    with pytest.raises(ConfigError, match="WORKOS_JWKS_URL"):
        read_settings({"WORKOS_JWKS_URL": "file:///etc/passwd"})


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
        ("postgres://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        (
            "postgresql://postgres:@/db?host=/tmp/sock",
            "postgresql+psycopg://postgres:@/db?host=/tmp/sock",
        ),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg://u@h/db"),
    ],
)
def test_database_url_gets_the_psycopg3_driver(url, expected):
    assert sqlalchemy_url(url) == expected


def test_a_non_postgres_database_url_is_refused():
    with pytest.raises(ConfigError):
        sqlalchemy_url("mysql://u@h/db")
