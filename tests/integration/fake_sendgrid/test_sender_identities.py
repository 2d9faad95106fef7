"""The fake's sender identities as SendGrid keeps them, through the real `sendgrid` client: Mail
Send refuses a From that is neither on a valid domain of the sending account nor a verified
sender of it, accounts are told apart by key and On-Behalf-Of, and the domain and sender lists
answer in SendGrid's published shapes."""

from __future__ import annotations

import asyncio
import json

import pytest
from fake_sendgrid_support import API_KEY, valid_payload
from python_http_client.exceptions import ForbiddenError, NotFoundError
from sendgrid import SendGridAPIClient

from dripiq_devtools.fake_sendgrid import FakeSendGrid
from dripiq_devtools.fake_sendgrid.accounts import FROM_NOT_VERIFIED


def client(fake: FakeSendGrid, key: str = API_KEY, subuser: str | None = None):  # type: ignore[no-untyped-def]
    return SendGridAPIClient(key, host=fake.url, impersonate_subuser=subuser).client


async def test_mail_from_an_unverified_address_is_refused_as_sendgrid_does() -> None:
    async with FakeSendGrid() as fake:
        payload = valid_payload()
        with pytest.raises(ForbiddenError) as refused:
            await asyncio.to_thread(client(fake).mail.send.post, request_body=payload)
        fake.accounts.add_sender(API_KEY, payload["from"]["email"])
        accepted = await asyncio.to_thread(client(fake).mail.send.post, request_body=payload)

    assert json.loads(refused.value.body) == {"errors": [{"message": FROM_NOT_VERIFIED, "field": "from", "help": None}]}
    assert accepted.status_code == 202 and len(fake.messages) == 1


async def test_accounts_are_apart_by_key_and_subuser() -> None:
    async with FakeSendGrid() as fake:
        payload = valid_payload()
        domain = payload["from"]["email"].rpartition("@")[2]
        fake.accounts.authenticate_domain(API_KEY, domain, subuser="sub")
        # The parent's own mail, another key's, an unknown subuser's: none may send as it.
        for api in (client(fake), client(fake, "SG.other"), client(fake, subuser="stranger")):
            with pytest.raises(ForbiddenError):
                await asyncio.to_thread(api.mail.send.post, request_body=payload)
        await asyncio.to_thread(client(fake, subuser="sub").mail.send.post, request_body=payload)

    [message] = fake.messages
    assert message.account == "sub"


async def test_domain_list_validate_and_verified_senders_answer_sendgrids_shapes() -> None:
    async with FakeSendGrid() as fake:
        own = fake.accounts.authenticate_domain(API_KEY, "own.test", valid=False, dns_ready=True)
        fake.accounts.authenticate_domain(API_KEY, "subs.test", subuser="sub")
        fake.accounts.add_sender(API_KEY, "a@x.test")
        fake.accounts.add_sender(API_KEY, "b@x.test", verified=False)
        api = client(fake)
        everything = json.loads((await asyncio.to_thread(api.whitelabel.domains.get)).body)
        parents = json.loads(
            (await asyncio.to_thread(api.whitelabel.domains.get, query_params={"exclude_subusers": "true"})).body
        )
        validated = json.loads((await asyncio.to_thread(api.whitelabel.domains._(str(own.id)).validate.post)).body)
        with pytest.raises(NotFoundError):
            await asyncio.to_thread(api.whitelabel.domains._("999999").validate.post)
        first = json.loads((await asyncio.to_thread(api.verified_senders.get, query_params={"limit": 1})).body)
        rest = json.loads(
            (
                await asyncio.to_thread(
                    api.verified_senders.get, query_params={"limit": 1, "lastSeenID": first["results"][0]["id"]}
                )
            ).body
        )

    assert [d["domain"] for d in everything] == ["own.test", "subs.test"]
    assert [(d["domain"], d["valid"]) for d in parents] == [("own.test", False)]
    assert set(parents[0]) >= {"id", "user_id", "subdomain", "domain", "username", "valid", "dns"}
    assert validated["valid"] is True and set(validated["validation_results"]) == {"mail_cname", "dkim1", "dkim2"}
    assert [(s["from_email"], s["verified"]) for s in first["results"] + rest["results"]] == [
        ("a@x.test", True),
        ("b@x.test", False),
    ]
