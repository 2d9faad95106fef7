"""Token keys: ids, per-purpose keys, rotation, and the tokens in mail sent before key ids."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import re
import uuid

import pytest

from dripiq_common.settings import TokenSecrets, load_settings
from dripiq_common.tokens import (
    InvalidToken,
    Purpose,
    TokenKey,
    TokenProblem,
    TokenSigner,
    key_id,
    parse_secrets,
    reply_address,
)

OLD = b"the secret of last year: 32 bytes"
NEW = b"the secret of this year: 32 bytes"
NEXT = b"the secret of next year: 32 bytes"
NOW = 1_900_000_000


class PreKeyIdSigner:
    """Tokens exactly as the code before key ids made them (HMAC over the raw secret): what
    links and reply addresses in mail already sent carry."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def _mac(self, purpose: bytes, data: bytes, size: int) -> bytes:
        return hmac.new(self.secret, purpose + b"\0" + data, hashlib.sha256).digest()[:size]

    def reply_token(self, message_id: str) -> str:
        raw = uuid.UUID(message_id).bytes
        return base64.b32encode(raw + self._mac(b"reply", raw, 8)).decode().rstrip("=").lower()

    def unsubscribe_token(self, tenant_id: str, message_id: str) -> str:
        body = f"{tenant_id}|{message_id}".encode()
        return base64.urlsafe_b64encode(body + self._mac(b"unsubscribe", body, 16)).decode().rstrip("=")

    def access_token(self, client_id: str, expires_at: int) -> str:
        body = f"{client_id}|{expires_at}".encode()
        return base64.urlsafe_b64encode(body + self._mac(b"access", body, 16)).decode().rstrip("=")


def problem(call) -> TokenProblem:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidToken) as exc:
        call()
    return exc.value.problem


def test_tokens_from_before_key_ids_are_accepted_while_their_secret_is_listed() -> None:
    message_id = str(uuid.uuid4())
    old = PreKeyIdSigner(OLD)
    reply, unsub, access = (
        old.reply_token(message_id),
        old.unsubscribe_token("acme", message_id),
        old.access_token("sendgrid", NOW + 60),
    )
    assert len(reply) == 39
    for signer in (TokenSigner(OLD), TokenSigner(NEW, [OLD])):
        assert signer.read_reply_token(reply) == message_id
        assert signer.read_reply_token(reply.upper()) == message_id
        assert signer.read_unsubscribe_token(unsub) == ("acme", message_id)
        assert signer.read_access_token(access, now=NOW) == "sendgrid"
    # Its secret no longer listed: refused. Without a key id, retired looks like forged.
    dropped = TokenSigner(NEW)
    assert problem(lambda: dropped.read_reply_token(reply)) == TokenProblem.BAD_SIGNATURE
    assert problem(lambda: dropped.read_unsubscribe_token(unsub)) == TokenProblem.BAD_SIGNATURE
    assert dropped.parse_access_token(access, now=NOW) is None


def test_new_tokens_carry_the_current_key_id_and_are_signed_with_its_purpose_key() -> None:
    signer = TokenSigner(NEW, [OLD])
    message_id = str(uuid.uuid4())
    reply = signer.reply_token(message_id)
    assert base64.b32decode(reply.upper())[:2] == key_id(NEW)
    unsub = signer.unsubscribe_token("acme", message_id)
    assert base64.urlsafe_b64decode(unsub + "==")[1:3] == key_id(NEW)
    # Not the old MAC over the raw secret: a process that only knows the old scheme refuses it.
    assert reply != PreKeyIdSigner(NEW).reply_token(message_id)
    assert signer.key_ids == (key_id(NEW).hex(), (key_id(OLD).hex(),))


def test_a_token_signed_with_a_previous_key_is_accepted() -> None:
    message_id = str(uuid.uuid4())
    before = TokenSigner(OLD)
    after = TokenSigner(NEW, [OLD])
    assert after.read_reply_token(before.reply_token(message_id)) == message_id
    assert after.read_unsubscribe_token(before.unsubscribe_token("acme", message_id)) == ("acme", message_id)
    assert after.read_access_token(before.access_token("sendgrid", NOW + 1), now=NOW) == "sendgrid"


def test_a_token_signed_with_an_unknown_key_is_refused() -> None:
    message_id = str(uuid.uuid4())
    stranger = TokenSigner(b"someone else's secret: 32 bytes!")
    ours = TokenSigner(NEW, [OLD])
    assert problem(lambda: ours.read_reply_token(stranger.reply_token(message_id))) == TokenProblem.UNKNOWN_KEY
    unsub = stranger.unsubscribe_token("acme", message_id)
    assert problem(lambda: ours.read_unsubscribe_token(unsub)) == TokenProblem.UNKNOWN_KEY
    assert ours.parse_access_token(stranger.access_token("sendgrid", NOW + 1), now=NOW) is None
    assert ours.parse_reply_token(stranger.reply_token(message_id)) is None


def test_purposes_never_cross() -> None:
    signer = TokenSigner(NEW)
    key = signer.current
    derived = list(key.purpose_keys.values())
    assert len(set(derived)) == len(Purpose) and NEW not in derived
    # An access token's body reads as "tenant|message" too: only its key tells them apart.
    access = signer.access_token("acme", NOW + 60)
    assert problem(lambda: signer.read_unsubscribe_token(access)) == TokenProblem.BAD_SIGNATURE
    unsub = signer.unsubscribe_token("sendgrid", str(NOW + 60))
    assert problem(lambda: signer.read_access_token(unsub, now=NOW)) == TokenProblem.BAD_SIGNATURE
    # The unsubscribe layout MACed with the reply key (or the access key) is no unsubscribe token.
    for other in (Purpose.REPLY, Purpose.ACCESS):
        body = b"\x01" + key.id + b"acme|" + str(uuid.uuid4()).encode()
        forged = base64.urlsafe_b64encode(body + key.mac(other, body, 16)).decode().rstrip("=")
        assert problem(lambda: signer.read_unsubscribe_token(forged)) == TokenProblem.BAD_SIGNATURE  # noqa: B023
    # A reply token's bytes MACed with the unsubscribe key are no reply token.
    signed = key.id + uuid.uuid4().bytes
    forged_reply = base64.b32encode(signed + key.mac(Purpose.UNSUBSCRIBE, signed, 12)).decode().lower()
    assert problem(lambda: signer.read_reply_token(forged_reply)) == TokenProblem.BAD_SIGNATURE
    # Before key ids the purpose was a label in the MAC: those do not cross either.
    old = PreKeyIdSigner(NEW)
    assert signer.parse_unsubscribe_token(old.access_token("acme", NOW + 60)) is None


def test_rotation_round_trip() -> None:
    message_id = str(uuid.uuid4())
    legacy = PreKeyIdSigner(OLD).unsubscribe_token("acme", message_id)
    year1 = TokenSigner(OLD)
    t1 = year1.unsubscribe_token("acme", message_id)
    # Step 1, no link refused anywhere during the roll-out: the next secret is accepted first.
    staged = TokenSigner(OLD, [NEW])
    assert staged.unsubscribe_token("acme", message_id) == t1
    # Step 2: the next secret signs, the old one is still accepted.
    year2 = TokenSigner(NEW, [OLD])
    t2 = year2.unsubscribe_token("acme", message_id)
    assert t2 != t1
    for token in (legacy, t1, t2):
        assert year2.read_unsubscribe_token(token) == ("acme", message_id)
    assert staged.read_unsubscribe_token(t2) == ("acme", message_id)
    # A year later the old secret is dropped: its links are refused, the newer ones are not.
    year3 = TokenSigner(NEXT, [NEW])
    assert year3.read_unsubscribe_token(t2) == ("acme", message_id)
    assert problem(lambda: year3.read_unsubscribe_token(t1)) == TokenProblem.UNKNOWN_KEY
    assert problem(lambda: year3.read_unsubscribe_token(legacy)) == TokenProblem.BAD_SIGNATURE


def test_reply_addresses_still_fit_a_local_part() -> None:
    message_id = str(uuid.uuid4())
    address = reply_address(TokenSigner(NEW, [OLD]), message_id, "reply.example.com")
    local = address.split("@")[0]
    assert len(local) == 54 <= 64
    assert re.fullmatch(r"reply\+[a-z2-7]{48}", local)


def test_keys_whose_ids_collide_are_both_tried() -> None:
    seen: dict[bytes, bytes] = {}
    for n in itertools.count():
        secret = f"collision candidate secret {n:08d}".encode()
        kid = key_id(secret)
        if kid in seen:
            first, second = seen[kid], secret
            break
        seen[kid] = secret
    message_id = str(uuid.uuid4())
    signer = TokenSigner(first, [second])
    assert signer.read_reply_token(TokenSigner(second).reply_token(message_id)) == message_id
    assert signer.read_reply_token(TokenSigner(first).reply_token(message_id)) == message_id


@pytest.mark.parametrize(
    "token",
    ["", "x", "a+b/c", "abc=", "Ae3-YWNt", "!" * 40, "A" * 600],
)
def test_malformed_unsubscribe_tokens_say_so(token: str) -> None:
    assert problem(lambda: TokenSigner(NEW).read_unsubscribe_token(token)) in {
        TokenProblem.MALFORMED,
        TokenProblem.UNKNOWN_KEY,
    }


def test_an_expired_access_token_says_so() -> None:
    signer = TokenSigner(NEW)
    assert problem(lambda: signer.read_access_token(signer.access_token("sendgrid", NOW), now=NOW)) == (
        TokenProblem.EXPIRED
    )


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValueError):
        TokenKey.from_secret(b"short")
    with pytest.raises(ValueError):
        TokenSigner(NEW, [b"short"])


class Secrets(TokenSecrets):
    pass


def test_settings_list_previous_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIPIQ_TOKEN_SECRET", NEW.decode())
    monkeypatch.setenv("DRIPIQ_TOKEN_PREVIOUS_SECRETS", f" {OLD.decode()} , {NEXT.decode()},")
    settings = load_settings(Secrets)
    assert parse_secrets(settings.token_previous_secrets.get_secret_value()) == [OLD, NEXT]
    signer = settings.token_signer()
    message_id = str(uuid.uuid4())
    assert signer.read_reply_token(TokenSigner(OLD).reply_token(message_id)) == message_id
    assert signer.read_reply_token(PreKeyIdSigner(NEXT).reply_token(message_id)) == message_id


def test_settings_refuse_a_short_previous_secret_without_showing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIPIQ_TOKEN_SECRET", NEW.decode())
    monkeypatch.setenv("DRIPIQ_TOKEN_PREVIOUS_SECRETS", f"{OLD.decode()},tooshort")
    with pytest.raises(SystemExit) as exc:
        load_settings(Secrets)
    assert "DRIPIQ_TOKEN_PREVIOUS_SECRETS" in str(exc.value) and "secret 2" in str(exc.value)
    assert "tooshort" not in str(exc.value)
