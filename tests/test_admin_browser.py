"""The admin in a real browser: sign in, browse and search conversations, read one,
issue an API key and see it once, sign out and be kept out; a viewer is offered no
changes; a title or a message that is one long word never makes a page wider.

Screenshots of each step go to test-artifacts/admin-*.png and viewer-*.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import Browser, Page, expect

from florent.auth.apikeys import issue_api_key
from florent.staff import accounts as staff

from .browser import ARTIFACTS, chromium
from .factories import TESTER, api_key_secret, append_message, create_conversation

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery staple"
CONVERSATIONS = "/api/florent/conversations"
PLAINTEXT_KEY = re.compile(r"flk_[0-9a-f]{24}_[A-Za-z0-9_-]{43}")
# How far the page, and each table in it, reaches beyond where it should.
OVERFLOW = """() => ({
    page: document.documentElement.scrollWidth - window.innerWidth,
    tables: Array.from(document.querySelectorAll("table")).map(
        table => Math.ceil(table.getBoundingClientRect().width) - table.parentElement.clientWidth),
    scrollers: Array.from(document.querySelectorAll(".table-responsive")).map(
        box => box.scrollWidth - box.clientWidth),
})"""


@pytest.fixture
def data(app: Flask, alice: dict[str, str], alice_elsewhere: dict[str, str]) -> dict[str, Any]:
    """An admin account and two conversations, one with messages, made the usual ways."""
    with app.app_context():
        staff.create_staff("ada@florent.test", role="admin", password=PASSWORD, by=TESTER)
    api = app.test_client()
    api.post(CONVERSATIONS, json={"title": "Office party"}, headers=alice_elsewhere)
    made = api.post(CONVERSATIONS, json={"title": "Quarterly roadmap"}, headers=alice).get_json()
    conversation_id = made["conversation"]["_id"]
    for content in ("First, the budget.", "Then, the hiring plan."):
        api.post(
            f"{CONVERSATIONS}/{conversation_id}/messages", json={"content": content}, headers=alice
        )
    return {"conversation_id": conversation_id}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser: Browser, live_server: str) -> Iterator[Page]:
    """A fresh browser session that records every request and every console error."""
    context = browser.new_context(base_url=live_server, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.requests = []  # type: ignore[attr-defined]
    page.problems = []  # type: ignore[attr-defined]
    page.on("request", lambda request: page.requests.append(request.url))
    page.on("pageerror", lambda error: page.problems.append(str(error)))
    # Report every CSP violation with what was blocked, where.
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', e => console.error("
        "'CSP violation', location.href, e.violatedDirective, e.blockedURI, e.sample))"
    )
    page.on(
        "console",
        lambda message: message.type == "error" and page.problems.append(message.text),
    )
    yield page
    context.close()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


def sign_in(page: Page, email: str) -> None:
    page.goto("/admin/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("signed-in-as")).to_contain_text(email)


def assert_all_local_and_quiet(page: Page, live_server: str) -> None:
    """Nothing came from anywhere but this server, and nothing broke on the way."""
    elsewhere = [u for u in page.requests if not u.startswith((live_server + "/", "data:"))]
    assert elsewhere == []
    assert page.problems == [], "\n".join(page.problems)


def test_staff_browse_issue_a_key_and_sign_out_in_a_real_browser(page: Page, live_server, data):
    # Anonymous: bounced to the sign-in page.
    page.goto("/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login\?next=/admin/$"))
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    shot(page, "admin-1-login")

    page.get_by_label("Email").fill("ada@florent.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_server}/admin/")
    expect(page.get_by_test_id("signed-in-as")).to_contain_text("ada@florent.test")
    expect(page.get_by_test_id("count").first).to_contain_text("2")
    # Styled by Flask-Admin's own Bootstrap, served from here: the navbar is dark.
    navbar = page.locator("nav.navbar")
    assert navbar.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(52, 58, 64)"
    shot(page, "admin-2-index")

    # The conversations list, then a search by title.
    page.locator("nav").get_by_role("link", name="Conversations").click()
    expect(page.locator("table.model-list")).to_contain_text("Office party")
    expect(page.locator("table.model-list")).to_contain_text("Quarterly roadmap")
    shot(page, "admin-3-conversations")

    search = page.get_by_placeholder("Title, Owner, Organization")
    search.fill("roadmap")
    search.press("Enter")
    expect(page).to_have_url(re.compile(r"search=roadmap"))
    expect(page.locator("table.model-list")).not_to_contain_text("Office party")
    shot(page, "admin-4-search")

    # One conversation, its messages in order.
    page.get_by_role("link", name="Quarterly roadmap").click()
    expect(page).to_have_url(
        re.compile(rf"/admin/conversations/details/\?id=org_01ACME,{data['conversation_id']}")
    )
    expect(page.get_by_test_id("message-content")).to_have_text(
        ["First, the budget.", "Then, the hiring plan."]
    )
    shot(page, "admin-5-conversation")

    # Flask-Admin's filter UI (its own scripts, under our CSP): organization equals ...
    page.goto("/admin/conversations/")  # waits for the load event: its scripts have run
    page.get_by_role("link", name="Add Filter").click()
    organization = page.locator("a.filter", has_text="Organization")
    expect(organization).to_be_visible()
    organization.click()
    page.locator("#filter_form input.filter-val").fill("org_02OTHER")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"flt\d+_\d+=org_02OTHER"))
    expect(page.locator("table.model-list")).to_contain_text("Office party")
    expect(page.locator("table.model-list")).not_to_contain_text("Quarterly roadmap")
    shot(page, "admin-5b-filter")

    # Issue an API key: its plaintext is on the confirmation page, and only there.
    page.locator("nav").get_by_role("link", name="API keys").click()
    page.get_by_role("link", name="Create", exact=True).click()
    page.get_by_label("Organization id").fill("org_01ACME")
    page.get_by_label("Name").fill("Browser robot")
    page.get_by_role("button", name="Issue key").click()
    plaintext = page.get_by_test_id("plaintext-key").inner_text().strip()
    assert PLAINTEXT_KEY.fullmatch(plaintext)
    shot(page, "admin-6-key-issued")

    # A reload resubmits the form: it is refused, issues nothing and shows nothing.
    page.reload()
    expect(page).to_have_url(f"{live_server}/admin/api-keys/")
    expect(page.get_by_text("That form was already used or has expired")).to_be_visible()
    expect(page.locator("table.model-list")).to_contain_text("Browser robot")
    expect(page.locator("table.model-list tbody tr")).to_have_count(1)
    assert plaintext not in page.content() and api_key_secret(plaintext) not in page.content()
    shot(page, "admin-7-api-keys")

    # The other lists render too; a message links to its conversation by its title. Its
    # content is on its own page only, whose opening the audit trail records.
    page.locator("nav").get_by_role("link", name="Messages").click()
    expect(page.locator("table.model-list")).to_contain_text("Quarterly roadmap")
    expect(page.locator("table.model-list")).not_to_contain_text("hiring plan")
    page.locator("table.model-list").get_by_title("View Record").first.click()
    # Newest id first, and ids made within one second have no order between them.
    expect(page.locator(".message-content")).to_have_text(
        re.compile(r"^(First, the budget\.|Then, the hiring plan\.)$")
    )
    page.go_back()
    page.locator("table.model-list").get_by_role("link", name="Quarterly roadmap").first.click()
    expect(page.get_by_test_id("message-content")).to_have_count(2)
    page.locator("nav").get_by_role("link", name="Staff").click()
    expect(page.locator("table.model-list")).to_contain_text("ada@florent.test")
    expect(page.get_by_role("link", name="Deactivate…")).to_have_count(0)  # only ada here
    shot(page, "admin-8-staff")

    # An address that leads nowhere: the admin's own page, in its layout, under its CSP.
    assert page.goto("/admin/conversations/nope").status == 404
    expect(page.get_by_test_id("not-found")).to_contain_text("There is nothing at this address")
    expect(page.get_by_test_id("signed-in-as")).to_contain_text("ada@florent.test")
    shot(page, "admin-8b-not-found")
    # Chromium reports the 404 itself on the console; nothing else may be there.
    assert page.problems == [  # type: ignore[attr-defined]
        "Failed to load resource: the server responded with a status of 404 (NOT FOUND)"
    ]
    page.problems.clear()  # type: ignore[attr-defined]

    # Sign out: the admin is closed again.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    shot(page, "admin-9-signed-out")
    page.goto("/admin/conversations/")
    expect(page).to_have_url(re.compile(r"/admin/login\?next=/admin/conversations/$"))

    assert_all_local_and_quiet(page, live_server)


def test_a_viewer_browses_but_is_offered_no_changes(page: Page, live_server, app, data):
    with app.app_context():
        staff.create_staff("vic@florent.test", role="viewer", password=PASSWORD, by=TESTER)
        issue_api_key("org_01ACME", "CI robot", by=TESTER)

    sign_in(page, "vic@florent.test")
    menu = page.locator("nav")
    expect(menu.get_by_role("link", name="Conversations")).to_be_visible()
    expect(menu.get_by_role("link", name="Staff")).to_have_count(0)
    shot(page, "viewer-1-index")

    menu.get_by_role("link", name="API keys").click()
    expect(page.locator("table.model-list")).to_contain_text("CI robot")
    expect(page.get_by_role("link", name="Create", exact=True)).to_have_count(0)
    expect(page.get_by_role("link", name="Revoke…")).to_have_count(0)
    shot(page, "viewer-2-api-keys")
    assert_all_local_and_quiet(page, live_server)

    for url in ("/admin/staff/", "/admin/api-keys/new/"):
        assert page.goto(url).status == 403, url


def test_words_without_spaces_never_widen_a_page(page: Page, live_server, app, alice, data):
    title = ("Supercalifragilisticexpialidocious" * 4)[:120]
    api = app.test_client()
    conversation = create_conversation(api, alice, title=title)
    append_message(api, alice, conversation["_id"], "Lorem" * 400)

    sign_in(page, "ada@florent.test")
    for name, url in (
        ("conversations", "/admin/conversations/"),
        ("messages", "/admin/messages/"),
        ("conversation", f"/admin/conversations/details/?id=org_01ACME,{conversation['_id']}"),
    ):
        page.goto(url)
        expect(page.get_by_text(title[:60], exact=False).first).to_be_visible()
        shot(page, f"admin-long-words-{name}")
        overflow = page.evaluate(OVERFLOW)
        assert overflow["page"] <= 0, (url, overflow)
        assert all(width <= 0 for width in overflow["tables"] + overflow["scrollers"]), (
            url,
            overflow,
        )
    assert_all_local_and_quiet(page, live_server)
