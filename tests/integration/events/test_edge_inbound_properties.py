"""Properties of Inbound Parse at the edge and in the events worker: any multipart post, well-formed
or broken in the ways generated here, is taken and stored or dead-lettered; a post that is not
multipart is 400.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from edge_properties_support import JSON, PROPERTY, check_inbound
from events_helpers import multipart
from hypothesis import given
from hypothesis import strategies as st

# --- Inbound Parse ------------------------------------------------------------------------

FIELD_NAMES = ["headers", "text", "html", "from", "to", "subject", "envelope", "charsets", "attachment1", "SPF"]
ENCODINGS = ["utf-8", "latin-1", "utf-16", "cp1252", "shift_jis", "koi8-r"]
CHARSET_NAMES = st.sampled_from(
    [
        "utf-8",
        "UTF-8",
        "iso-8859-1",
        "windows-1252",
        "x-nonsense",
        "utf-16",
        "utf-32",
        "utf-8-sig",
        "ascii",
        "koi8-r",
        "shift_jis",
        "gb2312",
        "big5",
        "base64",
        "rot13",
        "hex",
        "zlib",
        "unknown-8bit",
        "",
        " ",
        "utf-7",
        "idna",
        "undefined",
        "punycode",
        "unicode_escape",
        "raw_unicode_escape",
        "utf-8\x00",
    ]
) | st.text(max_size=20)
ENCODED_TEXT = st.builds(
    lambda t, enc: t.encode(enc, errors="replace"), st.text(max_size=150), st.sampled_from(ENCODINGS)
)
VALUES = st.binary(max_size=200) | ENCODED_TEXT
HEADER_NAMES = st.sampled_from(
    [
        "Subject",
        "From",
        "To",
        "Cc",
        "Reply-To",
        "In-Reply-To",
        "References",
        "Message-ID",
        "Auto-Submitted",
        "Precedence",
        "X-Autoreply",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Date",
        "Received",
    ]
) | st.from_regex(r"[!-9;-~]{1,20}", fullmatch=True)
HEADER_VALUES = (
    st.text(max_size=60)
    | st.sampled_from(
        [
            "=?utf-8?q?caf=C3=A9?=",
            "=?x-nonsense?b?AAAA?=",
            "=?idna?q?x?=",
            "=?utf-8?b?!!!?=",
            "=?unknown-8bit?q?=FF?=",
            '"\\',
            "<",
            "<<>>",
            '"',
            "(",
            "a@b@c",
            "<a@b> <c@d",
            ":;,@<>",
            "undisclosed-recipients:;",
            "text/plain; charset=idna",
            "text/plain; charset=x-nonsense",
            "multipart/mixed",
            "multipart/alternative; boundary=",
            "base64",
            "quoted-printable",
            "auto-replied",
            "bulk",
        ]
    )
    | st.binary(max_size=40).map(lambda b: b.decode("latin-1"))
)
HEADER_BLOCKS = st.builds(
    lambda pairs, sep, enc: b"".join(f"{n}: {v}".encode(enc, errors="replace") + sep for n, v in pairs),
    st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=8),
    st.sampled_from([b"\r\n", b"\n"]),
    st.sampled_from(["utf-8", "latin-1"]),
)
RAW_EMAILS = st.one_of(
    st.binary(max_size=400),
    st.builds(lambda head, body: head + b"\r\n" + body, HEADER_BLOCKS, VALUES),
)
CHARSETS_FIELD = st.one_of(
    st.dictionaries(st.sampled_from(FIELD_NAMES), CHARSET_NAMES | JSON, max_size=6).map(
        lambda d: json.dumps(d).encode()
    ),
    JSON.map(lambda v: json.dumps(v).encode()),
    VALUES,
)
ENVELOPE_FIELD = st.one_of(
    st.fixed_dictionaries(
        {}, optional={"to": st.lists(st.emails() | st.text(max_size=30) | JSON, max_size=3) | JSON, "from": JSON}
    ).map(lambda d: json.dumps(d).encode()),
    JSON.map(lambda v: json.dumps(v).encode()),
    VALUES,
)


@dataclass(frozen=True)
class InboundPost:
    body: bytes
    content_type: str
    # Built as multipart/form-data with a boundary the body uses: must parse, not raise.
    well_formed: bool
    charsets: Any = None


@st.composite
def inbound_posts(draw: st.DrawFn) -> InboundPost:
    fields: dict[str, bytes] = draw(st.dictionaries(st.sampled_from(FIELD_NAMES), VALUES, max_size=6))
    if draw(st.booleans()):
        fields["headers"] = draw(HEADER_BLOCKS)
    if draw(st.booleans()):
        fields["charsets"] = draw(CHARSETS_FIELD)
    if draw(st.booleans()):
        fields["envelope"] = draw(ENVELOPE_FIELD)
    if draw(st.booleans()):
        fields["email"] = draw(RAW_EMAILS)  # "Send Raw" mode
    boundary = draw(st.from_regex(r"[0-9A-Za-z_-]{1,40}", fullmatch=True))
    body, content_type = multipart(fields, boundary)
    # The boundary must not show up inside a value for the post to be what it was built as.
    # (RFC 2046 wants at least one part: an empty form is not well-formed either.)
    well_formed = bool(fields) and not any(f"--{boundary}".encode() in v for v in fields.values())
    broken = draw(
        st.sampled_from(
            ["none", "none", "truncated", "wrong_boundary", "no_boundary", "quoted", "mixed", "garbage", "lf"]
        )
    )
    if broken == "truncated":
        body, well_formed = body[: draw(st.integers(0, max(len(body) - 1, 0)))], False
    elif broken == "wrong_boundary":
        content_type, well_formed = "multipart/form-data; boundary=not-" + boundary, False
    elif broken == "no_boundary":
        content_type, well_formed = "multipart/form-data", False
    elif broken == "quoted":
        content_type = f'multipart/form-data; boundary="{boundary}"'
    elif broken == "mixed":
        content_type = f"Multipart/Mixed; BOUNDARY={boundary}; charset=x-nonsense"
    elif broken == "garbage":
        body, well_formed = draw(st.binary(max_size=400)), False
    elif broken == "lf":
        body = body.replace(b"\r\n", b"\n")
    return InboundPost(body, content_type, well_formed, fields.get("charsets"))


@PROPERTY
@given(post=inbound_posts())
async def test_any_multipart_post_is_taken_and_stored_or_dead_lettered(h, post):
    await check_inbound(h, post.body, post.content_type, well_formed=post.well_formed)


@PROPERTY
@given(
    body=st.binary(max_size=300),
    content_type=st.sampled_from(
        ["application/json", "text/plain", "application/x-www-form-urlencoded", "multipart", "", "form-data"]
    ),
)
async def test_a_post_that_is_not_multipart_is_400(h, body, content_type):
    await check_inbound(h, body, content_type, well_formed=False)
