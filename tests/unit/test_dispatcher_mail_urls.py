"""Production refuses the development defaults of where mail points people: the unsubscribe URL
must be public https, the reply and Message-ID domains real (not RFC 2606/6761 names)."""

from __future__ import annotations

import pytest

from dripiq_common.settings import load_settings
from dripiq_dispatcher.settings import DispatcherSettings, reserved_host_problem

GOOD = {
    "DISPATCHER_UNSUBSCRIBE_BASE_URL": "https://hooks.dripiq-mail.com/u/",
    "DISPATCHER_REPLY_DOMAIN": "reply.dripiq-mail.com",
    "DISPATCHER_MESSAGE_ID_DOMAIN": "mail.dripiq-mail.com",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("DRIPIQ_DEV_INSECURE", "DISPATCHER_ALLOW_LOCAL_MAIL_URLS", *GOOD):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql://x@h/db")
    monkeypatch.setenv("DRIPIQ_TOKEN_SECRET", "0123456789abcdef")
    return monkeypatch


def start(env: pytest.MonkeyPatch, **values: str) -> str:
    """What start-up says (load_settings, as the process calls it); "" when it starts."""
    for name, value in {**GOOD, **values}.items():
        env.setenv(name, value)
    try:
        load_settings(DispatcherSettings)
    except SystemExit as exc:
        return str(exc)
    return ""


def test_real_values_start(env):
    assert start(env) == ""


def test_nothing_set_names_every_missing_setting(env):
    with pytest.raises(SystemExit) as exc:
        load_settings(DispatcherSettings)
    for name in GOOD:
        assert f"{name}: Field required" in str(exc.value)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://hooks.dripiq-mail.com/u/", "must be an https URL"),
        ("https://127.0.0.1:8080/u/", "127.0.0.1 is a loopback address"),
        ("https://[::1]/u/", "is a loopback address"),
        ("https://localhost/u/", "reserved name .localhost"),
        ("https://edge.dripiq.localhost/u/", "reserved name .localhost"),
        ("https://hooks.example.com/u/", "example domain"),
        ("https://example.org/u/", "example domain"),
        ("https://hooks.example/u/", "reserved name .example"),
        ("https://hooks.acme.test/u/", "reserved name .test"),
        ("https://hooks.acme.invalid/u/", "reserved name .invalid"),
        ("https://edge/u/", "not a fully qualified domain name"),
        ("/u/", "must be an https URL"),
    ],
)
def test_an_unsubscribe_url_nobody_can_use_stops_start_up(env, url, why):
    said = start(env, DISPATCHER_UNSUBSCRIBE_BASE_URL=url)
    assert "DISPATCHER_UNSUBSCRIBE_BASE_URL" in said and why in said, said


@pytest.mark.parametrize("name", ["DISPATCHER_REPLY_DOMAIN", "DISPATCHER_MESSAGE_ID_DOMAIN"])
@pytest.mark.parametrize("domain", ["reply.dripiq.localhost", "mail.example.net", "acme.test", "127.0.0.1", ""])
def test_a_mail_domain_that_is_not_real_stops_start_up(env, name, domain):
    said = start(env, **{name: domain})
    assert said.count(name) == 1, said


@pytest.mark.parametrize("relaxation", ["DISPATCHER_ALLOW_LOCAL_MAIL_URLS", "DRIPIQ_DEV_INSECURE"])
def test_one_machine_may_point_mail_at_itself_when_it_says_so(env, relaxation):
    local = {
        "DISPATCHER_UNSUBSCRIBE_BASE_URL": "http://127.0.0.1:8080/u/",
        "DISPATCHER_REPLY_DOMAIN": "reply.dripiq.localhost",
        "DISPATCHER_MESSAGE_ID_DOMAIN": "dripiq.localhost",
    }
    assert start(env, **local) != ""
    env.setenv(relaxation, "true")
    assert start(env, **local) == ""


def test_public_names_and_addresses_are_fine():
    for host in ("hooks.dripiq.io", "10.0.0.7", "example.company.com", "testing.dripiq.io"):
        assert reserved_host_problem(host) is None, host
