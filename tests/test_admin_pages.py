"""Every admin page: its security headers, local assets, the admin's own "Not found"
page, and no secret on any of them."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from florent.auth.apikeys import issue_api_key
from florent.extensions import db
from florent.models import Staff

from .factories import TESTER, api_key_secret
from .test_admin import (  # noqa: F401 (fixtures, found by their names)
    CONVERSATIONS,
    PASSWORD,
    administrator_fixture,
    cheap_password_hashes_fixture,
    conversation_fixture,
    viewer_fixture,
)

# -- Headers and assets ------------------------------------------------------------


def test_admin_and_login_pages_forbid_framing_and_sniffing(viewer, conversation):
    anonymous = viewer.application.test_client()
    responses = [
        anonymous.get("/admin/login"),
        anonymous.get("/admin/"),
        viewer.get("/admin/"),
        viewer.get("/admin/conversations/"),
        viewer.get(f"/admin/conversations/details/?id=org_01ACME,{conversation['_id']}"),
        viewer.get("/admin/staff/"),  # a 403
    ]
    for response in responses:
        headers = response.headers
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        policy = headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


def test_inline_scripts_carry_this_responses_nonce(viewer):
    response = viewer.get("/admin/conversations/")
    nonce = re.search(r"'nonce-([^']+)'", response.headers["Content-Security-Policy"]).group(1)
    page = response.get_data(as_text=True)
    scripts = re.findall(r"<script[^>]*>", page)
    assert scripts and all(f'nonce="{nonce}"' in tag for tag in scripts)
    assert (
        viewer.get("/admin/conversations/").headers["Content-Security-Policy"]
        != (response.headers["Content-Security-Policy"])
    ), "a fresh nonce per response"


def test_assets_are_served_locally(app, viewer):
    for page in (viewer.get("/admin/conversations/"), app.test_client().get("/admin/login")):
        html = page.get_data(as_text=True)
        urls = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert not [u for u in urls if re.match(r"(https?:)?//", u)], "nothing from another host"
        assets = [u for u in urls if u.startswith("/admin/static/")]
        assert assets
        for url in assets:
            with viewer.get(url) as asset:  # a file response: close it
                assert asset.status_code == 200, url


# -- Not found ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/admin/nope",
        "/admin/conversations/nope",
        "/admin/api-keys/new/nope/",
        "/admin/staff/deactivate/?id=000000000000000000000000",  # no such account
        "/admin/api-keys/revoke/?id=nope",  # no such key
    ],
)
def test_an_unknown_admin_address_is_the_admins_own_not_found_page(administrator, url):
    response = administrator.get(url)

    assert response.status_code == 404
    page = response.get_data(as_text=True)
    assert "<title>Not found - Florent admin</title>" in page
    assert 'data-testid="not-found"' in page and "Back to the admin home" in page
    assert 'class="navbar' in page and "admin@florent.test" in page, "within the admin layout"
    policy = response.headers["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy).group(1)
    assert all(f'nonce="{nonce}"' in tag for tag in re.findall(r"<(?:script|style)[^>]*>", page))
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"


def test_a_missing_admin_asset_is_not_found_and_leaves_the_session_alone(viewer):
    response = viewer.get("/admin/static/nope.css")

    assert response.status_code == 404
    assert "<title>Not found - Florent admin</title>" in response.get_data(as_text=True)
    assert "Set-Cookie" not in response.headers


def test_a_signed_out_visitor_to_an_unknown_admin_address_is_sent_to_sign_in(client):
    """The same answer as for every admin page: nothing tells which addresses exist."""
    for url in ("/admin/nope", "/admin/conversations/nope"):
        response = client.get(url)
        assert response.status_code == 302
        assert response.location == f"/admin/login?next={url}"


def test_real_admin_addresses_keep_their_answers_beside_the_catch_all(viewer):
    assert viewer.get("/admin/conversations").status_code == 308  # to add the slash
    assert viewer.get("/admin").status_code == 308
    logout = viewer.get("/admin/logout")  # a POST only: refused, not "Not found"
    assert logout.status_code == 405
    assert set(logout.headers["Allow"].split(", ")) == {"OPTIONS", "POST"}
    assert viewer.get("/admin/").status_code == 200, "and still signed in"


def test_unknown_addresses_outside_the_admin_are_not_the_admins(viewer, alice):
    for url, headers in (("/api/nope", {}), (f"{CONVERSATIONS}/nope", alice)):
        response = viewer.get(url, headers=headers)
        assert response.status_code == 404
        assert response.get_json() == {"error": "not_found"}
    response = viewer.get("/nope")
    assert response.status_code == 404 and "Florent admin" not in response.get_data(as_text=True)


# -- Secrets ------------------------------------------------------------------------


def test_no_secret_ever_reaches_a_page(app, administrator, conversation):
    with app.app_context():
        key, plaintext = issue_api_key("org_01ACME", "CI robot", by=TESTER)
        secret_hash = key.secret_hash.hex()
        password_hash = db.session.scalars(select(Staff)).one().password_hash
    pages = [
        "/admin/",
        "/admin/conversations/",
        f"/admin/conversations/details/?id=org_01ACME,{conversation['_id']}",
        "/admin/messages/",
        "/admin/api-keys/",
        "/admin/api-keys/?search=CI",
        f"/admin/api-keys/revoke/?id={key.id}",
        "/admin/staff/",
        "/admin/staff/?search=admin",
    ]
    secrets = (plaintext, api_key_secret(plaintext), secret_hash, password_hash, PASSWORD)
    for url in pages:
        response = administrator.get(url)
        assert response.status_code == 200, url
        page = response.get_data(as_text=True)
        assert not [s for s in secrets if s in page], url
        assert "secret_hash" not in page and "password_hash" not in page, url
