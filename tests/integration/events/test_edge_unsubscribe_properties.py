"""Properties of the one-click unsubscribe link at the edge: an arbitrary token, or one of ours
changed, cut or extended, is answered 4xx to GET and POST alike.
"""

from __future__ import annotations

import base64
from urllib.parse import quote

from edge_properties_support import PROPERTY, Harness
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

# --- one-click unsubscribe ----------------------------------------------------------------

TOKENS = st.one_of(
    st.text(min_size=1, max_size=200),
    st.binary(min_size=1, max_size=120).map(lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")),
    st.builds(lambda ch, n: ch * n, st.characters(), st.integers(1000, 20_000)),
)


async def check_bad_token(h: Harness, token: str) -> None:
    url = URL(h.base + "/u/" + quote(token, safe=""), encoded=True)
    for method in ("GET", "POST"):
        body = b"List-Unsubscribe=One-Click" if method == "POST" else None
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
        status, _ = await h.request(method, url, body, headers)
        assert 400 <= status < 500, (method, status, token[:100])


@PROPERTY
@given(token=TOKENS)
async def test_an_arbitrary_unsubscribe_token_is_4xx(h, token):
    await check_bad_token(h, token)


B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@PROPERTY
@given(data=st.data(), tenant=st.from_regex(r"t-[a-z0-9]{8}", fullmatch=True), message=st.uuids())
async def test_a_damaged_unsubscribe_token_is_4xx(h, data, tenant, message):
    token = h.signer.unsubscribe_token(tenant, str(message))
    how = data.draw(st.sampled_from(["change", "cut", "extend"]))
    if how == "change":
        # Not the last character: some of its bits are base64 padding and carry nothing.
        at = data.draw(st.integers(0, len(token) - 2))
        other = data.draw(st.sampled_from(B64URL).filter(lambda c: c != token[at]))
        forged = token[:at] + other + token[at + 1 :]
    elif how == "cut":
        forged = token[: data.draw(st.integers(1, len(token) - 1))]
    else:
        # Base64url characters: decoding skips any others, so they would not damage the token.
        forged = token + data.draw(st.text(B64URL, min_size=1, max_size=20))
    await check_bad_token(h, forged)
