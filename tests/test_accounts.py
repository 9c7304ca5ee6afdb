"""Signing up, logging in and out, changing the password, and who may see what."""

import pytest
from django.urls import reverse

from accounts.models import User
from tests.conftest import PASSWORD, make_user

pytestmark = pytest.mark.django_db


def signup(client, username, password=PASSWORD, email=""):
    return client.post(
        reverse("account_signup"),
        {"username": username, "email": email, "password1": password, "password2": password},
    )


def test_sign_up_with_username_and_password_logs_in_and_opens_profile_settings(client):
    """A new account needs only a username and a password, and is logged in at once."""
    response = signup(client, "dana")
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:profile_settings")
    assert User.objects.get(username="dana").email == ""
    assert client.get(reverse("rooms:index")).status_code == 200


@pytest.mark.parametrize(
    ("username", "message"),
    [
        ("ab", "at least 3 characters"),
        ("a" * 31, "at most 30"),
        ("bad name", "letters, digits"),
        ("bad-name", "letters, digits"),
        ("émile", "letters, digits"),
        ("admin", "reserved"),
        ("Assistant", "reserved"),
        ("everyone", "reserved"),
        ("here", "reserved"),
        ("System", "reserved"),
        ("support", "reserved"),
    ],
)
def test_sign_up_refuses_bad_or_reserved_usernames(client, username, message):
    """Usernames are 3-30 of letters, digits, _ and ., and not a reserved word."""
    response = signup(client, username)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not User.objects.filter(username__iexact=username).exists()


def test_usernames_are_unique_ignoring_case(client, alice):
    """Nobody can register ALICE when alice exists."""
    response = signup(client, "ALICE")
    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert User.objects.filter(username__iexact="alice").count() == 1


def test_database_refuses_usernames_differing_only_in_case(alice):
    """The constraint holds even where a form is bypassed."""
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create_user(username="Alice", password=PASSWORD)


def test_log_in_with_any_case_of_the_username(client, alice):
    response = client.post(reverse("account_login"), {"login": "ALICE", "password": PASSWORD})
    assert response.status_code == 302
    assert client.get(reverse("rooms:index")).context["user"] == alice


def test_wrong_password_is_refused_with_a_message(client, alice):
    response = client.post(reverse("account_login"), {"login": "alice", "password": "nope"})
    assert response.status_code == 200
    assert "not correct" in response.content.decode()


def test_log_out_ends_the_session(alice_client):
    response = alice_client.post(reverse("account_logout"))
    assert response.status_code == 302
    response = alice_client.get(reverse("rooms:index"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def test_change_password(alice_client, alice):
    """The change-password page is styled like the app and changes the password."""
    page = alice_client.get(reverse("account_change_password"))
    assert page.status_code == 200
    assert "calpico.css" in page.content.decode()
    response = alice_client.post(
        reverse("account_change_password"),
        {"oldpassword": PASSWORD, "password1": "a new long passphrase", "password2": "a new long passphrase"},
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password("a new long passphrase")


def test_account_pages_use_the_app_layout(client):
    for name in ("account_login", "account_signup"):
        body = client.get(reverse(name)).content.decode()
        assert 'class="topbar"' in body
        assert 'class="card card--narrow auth"' in body


def test_landing_page_is_public_and_signed_in_people_go_to_their_rooms(client, alice_client):
    assert client.get("/").status_code == 200
    assert alice_client.get("/")["Location"] == reverse("rooms:index")


@pytest.mark.parametrize(
    "path",
    ["/rooms/", "/rooms/new/", "/messages/new/", "/people/?q=a", "/settings/profile/", "/u/alice/", "/r/1/"],
)
def test_every_page_but_landing_and_accounts_requires_login(client, alice, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login") + "?next=")


def test_display_name_is_optional_and_at_most_50_characters(alice_client, alice):
    response = alice_client.post(
        reverse("accounts:profile_settings"), {"action": "profile", "display_name": "x" * 51}
    )
    assert response.status_code == 422
    assert "at most 50 characters" in response.content.decode()
    alice.refresh_from_db()
    assert alice.display_name == "Alice Liddell"

    response = alice_client.post(
        reverse("accounts:profile_settings"), {"action": "profile", "display_name": "  Al  "}
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.display_name == "Al"
    assert alice.name == "Al"

    alice_client.post(reverse("accounts:profile_settings"), {"action": "profile", "display_name": ""})
    alice.refresh_from_db()
    assert alice.name == "alice"


def test_profile_page_shows_the_person_and_a_message_button(alice_client, bob):
    body = alice_client.get("/u/BOB/").content.decode()
    assert "Bob Builder" in body
    assert "@bob" in body
    assert reverse("rooms:open_direct", args=["bob"]) in body


def test_own_profile_offers_edit_instead_of_message(alice_client):
    body = alice_client.get("/u/alice/").content.decode()
    assert reverse("accounts:profile_settings") in body
    assert reverse("rooms:open_direct", args=["alice"]) not in body


def test_unknown_or_deactivated_profiles_are_not_found(alice_client):
    assert alice_client.get("/u/nobody/").status_code == 404
    gone = make_user("gone")
    gone.is_active = False
    gone.save()
    assert alice_client.get("/u/gone/").status_code == 404


def test_people_search_finds_by_username_or_display_name(alice_client, bob, carol):
    found = alice_client.get("/people/", {"q": "builder"}, HTTP_HX_REQUEST="true")
    assert found.status_code == 200
    body = found.content.decode()
    assert "@bob" in body
    assert "@carol" not in body
    assert "<html" not in body  # an htmx request gets only the results
    assert "@carol" in alice_client.get("/people/", {"q": "@car"}).content.decode()
    assert "Nobody matches" in alice_client.get("/people/", {"q": "zzz"}).content.decode()


def test_people_search_leaves_out_yourself(alice_client, alice):
    assert "@alice" not in alice_client.get("/people/", {"q": "ali"}).content.decode()


def test_allauth_rate_limits_are_on(settings):
    assert settings.ACCOUNT_RATE_LIMITS_ENABLED
    assert getattr(settings, "ACCOUNT_RATE_LIMITS", None) is not False


@pytest.mark.parametrize(
    ("display_name", "error"),
    [
        ("\u202eecilA", "reverse the direction"),
        ("Bob \u2066(admin)\u2069", "reverse the direction"),
        ("x\u202a\u202c", "reverse the direction"),
        ("\u200b\u200b", "only invisible characters"),
        ("\u3164", "only invisible characters"),
        ("Administrator", "reserved"),
        ("admin", "reserved"),
        ("ADMIN", "reserved"),
        ("Ｍｏｄｅｒａｔｏｒ", "reserved"),  # fullwidth letters
        ("Ad\u200bmin", "reserved"),
        ("Sys\u00adtem", "reserved"),
        ("A d m i n", "reserved"),
        ("Calpico", "reserved"),
        ("Calpico Support", "reserved"),
        ("System", "reserved"),
        ("support.", "reserved"),
        ("The Calpico Team", "reserved"),
    ],
)
def test_display_names_that_hide_or_impersonate_are_refused(alice_client, alice, display_name, error):
    """No reversed text and no posing as staff, the product or the system."""
    response = alice_client.post(
        reverse("accounts:profile_settings"), {"action": "profile", "display_name": display_name}
    )
    assert response.status_code == 422
    assert error in response.content.decode()
    alice.refresh_from_db()
    assert alice.display_name == "Alice Liddell"


@pytest.mark.parametrize(
    ("display_name", "code"),
    [("\u202eecilA", "direction"), ("\u200b", "invisible"), ("Administrator", "reserved_display_name")],
)
def test_the_profile_service_refuses_display_names_the_form_refuses(alice, display_name, code):
    """The rule holds for every caller of the service, not only for the settings form."""
    from django.core.exceptions import ValidationError

    from accounts import services

    with pytest.raises(ValidationError) as refused:
        services.do_update_profile(alice, display_name=display_name)
    assert refused.value.code == code
    alice.refresh_from_db()
    assert alice.display_name == "Alice Liddell"


def test_the_profile_service_keeps_an_ordinary_name_and_allows_none(alice):
    from accounts import services

    services.do_update_profile(alice, display_name="  Alice the Admin ")
    alice.refresh_from_db()
    assert alice.display_name == "Alice the Admin"
    services.do_update_profile(alice, display_name="")
    alice.refresh_from_db()
    assert alice.display_name == ""


@pytest.mark.parametrize(
    "display_name",
    ["Alice the Admin", "Modesta", "Émile Zola", "محمد علي", "李雷", "Ada\u200dLovelace", "Systemic Sam"],
)
def test_ordinary_display_names_are_kept(alice_client, alice, display_name):
    response = alice_client.post(
        reverse("accounts:profile_settings"), {"action": "profile", "display_name": display_name}
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.display_name == display_name
