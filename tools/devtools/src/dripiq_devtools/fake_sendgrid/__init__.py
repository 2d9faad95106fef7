"""A local stand-in for the SendGrid v3 Mail Send API and its Signed Event Webhook.

Development (`make run`) and the tests point the real `sendgrid` client at it with
`SendGridAPIClient(key, host=fake.url)`. It answers with SendGrid's status codes, headers and
error bodies, records every accepted message, and posts events back signed exactly as SendGrid
signs them, so the dispatcher and the events service run the same code paths as in production.
It is never more generous than the real SendGrid:

- A send is held to SendGrid's published schema (`specs/`, through `sendgrid_schema`) with its
  one known erratum corrected, and to the rules SendGrid documents that the schema cannot say
  (custom_args size, content order, reserved headers, send_at window, recipient count, ...).
  Every problem is reported at once, in SendGrid's `{"errors": [...]}` shape.
- An open is reported only for a message with a text/html part and open tracking on; a click
  only on a link SendGrid rewrote (see `AcceptedMessage.tracked_links`). The request's
  tracking_settings decide; where it is silent, the account's setting does (off by default).
- With a webhook URL and a delay, `processed` then `delivered` arrive by themselves for every
  recipient, in signed batches of at most 1,000, retried until the receiver takes them.

Endpoints: `POST /v3/mail/send`, SendGrid's Mail Send (202 + X-Message-Id, 400, 401, 429, 5xx),
and the fake's own under /_fake/ (see `control`).

Options (`FakeSendGrid(...)` / command line, see `__main__`):
    private_key_pem / --private-key-file   the Event Webhook signing key (ECDSA P-256)
    latency_seconds / --latency            seconds before each answer
    rate_limit_per_second / --rate-limit   sends per second before answering 429
    api_key / --api-key                    accept only this key (default: any bearer token)
    webhook_url / --webhook-url            where processed and delivered events go by themselves
    auto_events_delay_seconds / --auto-events-delay
                                           how often they are flushed (0, the default: never)
    account_open_tracking, account_click_tracking
                                           the account's tracking, for requests that say nothing

Its modules: `validation` (what Mail Send refuses, in the words of `errors`), `messages` and
`tracking` (an accepted message and what SendGrid could track in it), `events` (webhook entries),
`signing` and `outbox` (the Signed Event Webhook and the events that arrive by themselves),
`server` and `control` (the app and its /_fake/ endpoints), `__main__` (the command line).
"""

from dripiq_devtools.fake_sendgrid.events import UnreportableEvent, build_event, build_reportable_event
from dripiq_devtools.fake_sendgrid.messages import AcceptedMessage, new_message_id
from dripiq_devtools.fake_sendgrid.server import FakeSendGrid
from dripiq_devtools.fake_sendgrid.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, load_or_create_private_key
from dripiq_devtools.fake_sendgrid.tracking import TrackedLink

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "AcceptedMessage",
    "FakeSendGrid",
    "TrackedLink",
    "UnreportableEvent",
    "build_event",
    "build_reportable_event",
    "load_or_create_private_key",
    "new_message_id",
]
