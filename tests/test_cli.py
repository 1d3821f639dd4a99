"""flask commands: API keys and development tokens."""

from __future__ import annotations

from sqlalchemy import select

from florent.extensions import db
from florent.models import ApiKey

from .conftest import bearer
from .factories import URL, api_key_secret


def test_api_keys_create_prints_the_plaintext_alone_on_the_last_line(app, client):
    result = app.test_cli_runner().invoke(
        args=["api-keys", "create", "--org", "org_01ACME", "--name", "CI"]
    )

    assert result.exit_code == 0, result.output
    plaintext = result.stdout.strip().splitlines()[-1]
    assert plaintext.startswith("flk_")
    response = client.post(URL, headers=bearer(plaintext))
    assert response.status_code == 201
    with app.app_context():
        key = db.session.scalars(select(ApiKey)).one()
    assert (key.org_id, key.name) == ("org_01ACME", "CI")
    assert response.get_json()["conversation"]["userId"] == f"apikey_{key.id}"


def test_api_keys_list_shows_keys_but_never_secrets(app, api_key):
    runner = app.test_cli_runner()
    runner.invoke(args=["api-keys", "create", "--org", "org_02OTHER", "--name", "Other"])

    everything = runner.invoke(args=["api-keys", "list"])
    only_acme = runner.invoke(args=["api-keys", "list", "--org", "org_01ACME"])

    assert everything.exit_code == 0
    header = everything.output.splitlines()[0].split()
    assert header[:4] == ["ID", "PREFIX", "NAME", "ORG"]
    assert api_key[0] in everything.output and "org_02OTHER" in everything.output
    assert api_key[0] in only_acme.output and "org_02OTHER" not in only_acme.output
    assert api_key[1] not in everything.output
    assert api_key_secret(api_key[1]) not in everything.output


def test_api_keys_revoke_by_id_or_plaintext(app, client):
    runner = app.test_cli_runner()
    first = runner.invoke(args=["api-keys", "create", "--org", "o", "--name", "a"]).stdout.split()[
        -1
    ]
    second = runner.invoke(args=["api-keys", "create", "--org", "o", "--name", "b"]).stdout.split()[
        -1
    ]
    first_id = first.split("_")[1]

    assert runner.invoke(args=["api-keys", "revoke", first_id]).exit_code == 0
    assert runner.invoke(args=["api-keys", "revoke", second]).exit_code == 0

    assert client.post(URL, headers=bearer(first)).status_code == 401
    assert client.post(URL, headers=bearer(second)).status_code == 401
    listing = runner.invoke(args=["api-keys", "list"]).output.splitlines()[1:]
    assert all(line.split()[-1] != "-" for line in listing)


def test_api_keys_revoke_of_unknown_key_fails(app):
    result = app.test_cli_runner().invoke(args=["api-keys", "revoke", "0" * 24])
    assert result.exit_code != 0
    assert "no such API key" in result.output


def test_dev_token_is_accepted_by_the_development_app(app, client):
    result = app.test_cli_runner().invoke(
        args=["dev-token", "--user", "user_dev", "--org", "org_dev"]
    )

    assert result.exit_code == 0
    token = result.stdout.strip()
    response = client.post(URL, headers=bearer(token))
    assert response.status_code == 201
    assert response.get_json()["conversation"]["userId"] == "user_dev"


def test_dev_token_is_refused_in_production(make_app, jwks_server):
    prod = make_app(jwks_server.url, env="production")
    result = prod.test_cli_runner().invoke(args=["dev-token", "--user", "u", "--org", "o"])

    assert result.exit_code != 0
    assert "refused in production" in result.output
