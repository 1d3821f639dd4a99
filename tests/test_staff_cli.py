"""`flask staff create | list | deactivate`: staff accounts for the admin."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import select

from florent.extensions import db
from florent.models import Staff
from florent.staff import accounts as staff

from .factories import TESTER

PASSWORD = "correct horse battery staple"


@pytest.fixture
def runner(app: Flask):
    return app.test_cli_runner()


@pytest.fixture
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(staff, "PASSWORD_HASH_METHOD", "scrypt:1024:8:1")


def stored(app: Flask) -> list[Staff]:
    with app.app_context():
        return list(db.session.scalars(select(Staff).order_by(Staff.email)))


def test_create_stores_a_lowercased_email_and_a_scrypt_hash(app, runner):
    result = runner.invoke(
        args=["staff", "create", "Ada@Florent.TEST", "--role", "admin", "--password", PASSWORD]
    )

    assert result.exit_code == 0, result.output
    assert "Created admin ada@florent.test." in result.output
    [account] = stored(app)
    assert (account.email, account.role, account.active) == ("ada@florent.test", "admin", True)
    assert account.password_hash.startswith("scrypt:32768:8:1$")
    assert PASSWORD not in account.password_hash
    assert account.created_at is not None and account.last_login_at is None


def test_create_prompts_for_the_password_twice(app, runner, cheap_hashes):
    result = runner.invoke(
        args=["staff", "create", "ada@florent.test", "--role", "viewer"],
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )

    assert result.exit_code == 0, result.output
    assert (
        "Password (12 characters or more):" in result.output
        and "Repeat for confirmation:" in result.output
    )
    assert PASSWORD not in result.output
    with app.app_context():
        assert staff.authenticate_staff("ada@florent.test", PASSWORD) is not None


def test_create_refuses_passwords_that_do_not_match(app, runner, cheap_hashes):
    result = runner.invoke(
        args=["staff", "create", "ada@florent.test", "--role", "viewer"],
        input=f"{PASSWORD}\nsomething else entirely\n",
    )

    assert result.exit_code != 0
    assert "do not match" in result.output
    assert stored(app) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["not-an-email", "--role", "viewer", "--password", PASSWORD], "not an email address"),
        (["ada@florent.test", "--role", "viewer", "--password", "too short"], "12 to 1024"),
        (["ada@florent.test", "--role", "owner", "--password", PASSWORD], "'owner' is not one of"),
        (["ada@florent.test", "--password", PASSWORD], "Missing option '--role'"),
    ],
)
def test_create_rejects_bad_input(app, runner, cheap_hashes, args, message):
    result = runner.invoke(args=["staff", "create", *args])

    assert result.exit_code != 0
    assert message in result.output
    assert stored(app) == []


def test_create_refuses_an_email_that_exists_in_any_case(app, runner, cheap_hashes):
    args = ["--role", "viewer", "--password", PASSWORD]
    assert runner.invoke(args=["staff", "create", "ada@florent.test", *args]).exit_code == 0

    result = runner.invoke(args=["staff", "create", "ADA@florent.test", *args])

    assert result.exit_code == 1
    assert "already exists" in result.output
    assert len(stored(app)) == 1


def test_list_shows_accounts_but_never_their_hashes(app, runner, cheap_hashes):
    with app.app_context():
        staff.create_staff("ada@florent.test", role="admin", password=PASSWORD, by=TESTER)
        staff.create_staff("bob@florent.test", role="viewer", password=PASSWORD, by=TESTER)
        staff.deactivate_staff("bob@florent.test", by=TESTER)

    result = runner.invoke(args=["staff", "list"])

    assert result.exit_code == 0
    lines = [line.split() for line in result.output.splitlines()]
    assert lines[0] == ["EMAIL", "ROLE", "ACTIVE", "CREATED", "LAST", "LOGIN"]
    assert [line[:3] for line in lines[1:]] == [
        ["ada@florent.test", "admin", "yes"],
        ["bob@florent.test", "viewer", "no"],
    ]
    assert "scrypt" not in result.output


def test_deactivate_turns_the_account_off(app, runner, cheap_hashes):
    with app.app_context():
        staff.create_staff("ada@florent.test", role="admin", password=PASSWORD, by=TESTER)

    result = runner.invoke(args=["staff", "deactivate", "ADA@florent.test"])

    assert result.exit_code == 0
    assert "Deactivated ada@florent.test." in result.output
    [account] = stored(app)
    assert account.active is False
    with app.app_context():
        assert staff.authenticate_staff("ada@florent.test", PASSWORD) is None


def test_deactivate_of_an_unknown_account_fails(app, runner):
    result = runner.invoke(args=["staff", "deactivate", "nobody@florent.test"])

    assert result.exit_code == 1
    assert "no such staff account" in result.output
