"""python -m dripiq_dispatcher: the dispatcher process."""

from __future__ import annotations

from datetime import timedelta

import structlog
from nats.aio.msg import Msg

from dripiq_common import engagement
from dripiq_common.bus.contract import Consumers, Streams
from dripiq_common.bus.worker import PullWorker, per_message, whole_batch
from dripiq_common.logging import configure_logging
from dripiq_common.loops import Poller
from dripiq_common.service import Parts, Runtime, run_process, run_service
from dripiq_common.settings import load_settings
from dripiq_dispatcher.breaker import ProviderBreaker
from dripiq_dispatcher.campaign_mail import MailSettings
from dripiq_dispatcher.campaigns import CampaignStates
from dripiq_dispatcher.drops import Drops
from dripiq_dispatcher.forwarding import ReplyForwarder, ReplyForwardingSettings
from dripiq_dispatcher.handlers import ACCESS, SERVICE_NAMES, registrars
from dripiq_dispatcher.identities import SenderIdentities
from dripiq_dispatcher.identity_holds import HeldSends
from dripiq_dispatcher.identity_recheck import IdentityRecheck
from dripiq_dispatcher.message_suppressions import MessageSuppressions
from dripiq_dispatcher.messages import Messages
from dripiq_dispatcher.models import outbox
from dripiq_dispatcher.provider import AsyncSendGridSender, MailSender, api_key_for
from dripiq_dispatcher.rate_limits import PRUNE_BATCH, RateLimits
from dripiq_dispatcher.sender_auth import SendGridSenderChecks
from dripiq_dispatcher.sending import Sends
from dripiq_dispatcher.settings import DispatcherSettings
from dripiq_dispatcher.suppressions import Suppressions
from dripiq_dispatcher.tasks import Tasks
from dripiq_dispatcher.unconfirmed import UnconfirmedSends

SEND = Consumers.DISPATCHER_SEND
ENGAGEMENT = Consumers.DISPATCHER_ENGAGEMENT
FORWARD = Consumers.DISPATCHER_FORWARD
SUPPRESS = Consumers.DISPATCHER_SUPPRESS
CAMPAIGNS = Consumers.DISPATCHER_CAMPAIGNS
CAMPAIGN_STATES_BATCH = 500
# Consumers whose handlers count provider attempts against DISPATCHER_MAX_ATTEMPTS (a send
# comes back through the scheduler instead, until DISPATCHER_RETRY_HORIZON_SECONDS).
ATTEMPTING = (FORWARD,)

log = structlog.get_logger(__name__)


def build(settings: DispatcherSettings, sender: MailSender, rt: Runtime, api_key: str) -> Parts:
    relay = rt.outbox_relay(outbox)
    accounts = settings.provider_accounts
    breaker = ProviderBreaker(
        threshold=settings.breaker_threshold,
        cooldown=settings.breaker_cooldown_seconds,
        max_cooldown=settings.breaker_max_cooldown_seconds,
    )
    dispatcher = Sends(
        rt.engine,
        rt.clock,
        sender,
        settings.token_signer(),
        MailSettings(
            settings.reply_domain,
            settings.message_id_domain,
            settings.unsubscribe_base_url,
            click_tracking_text=settings.click_tracking_text,
            require_postal_address=settings.requires_postal_address,
        ),
        settings.retry_policy,
        on_outbox=relay.kick,
        breaker=breaker,
        accounts=accounts,
    )
    unconfirmed = UnconfirmedSends(rt.engine, rt.clock, on_outbox=relay.kick)
    rate_limits = RateLimits(rt.engine, rt.clock)
    checks = SendGridSenderChecks(settings.sendgrid_api_host, api_key, settings.verify_timeout_seconds)
    held = HeldSends(rt.engine, rt.clock, on_outbox=relay.kick, batch=settings.identity_release_batch)
    releaser = Poller(
        held.release,
        full=settings.identity_release_batch,
        poll_seconds=settings.identity_release_poll_seconds,
        name="identity-holds",
    )
    identities = SenderIdentities(rt.engine, rt.clock, checks, accounts, on_verified=releaser.wake)
    identity_loops = [releaser]
    if settings.identity_recheck_hours > 0:
        recheck = IdentityRecheck(
            rt.engine,
            rt.clock,
            checks,
            accounts,
            every=timedelta(hours=settings.identity_recheck_hours),
            batch=settings.identity_recheck_batch,
            on_verified=releaser.wake,
        )
        identity_loops.append(
            Poller(
                recheck.recheck,
                full=settings.identity_recheck_batch,
                poll_seconds=settings.identity_recheck_poll_seconds,
                name="identity-recheck",
            )
        )
    suppressions = Suppressions(rt.engine, rt.clock)
    drops = Drops(rt.engine, rt.clock, on_outbox=relay.kick)
    forwarding = ReplyForwardingSettings(rt.engine, rt.clock)
    forwarder = ReplyForwarder(rt.engine, rt.clock, sender, settings.max_attempts, accounts)
    # Commands come in batches, each admitted and settled in one transaction with its
    # provider calls side by side; several batches are in flight so one waiting on the
    # provider never idles the database, and their calls together never exceed the pool.
    sends = PullWorker(
        rt.js,
        rt.nc,
        SEND,
        lambda msgs: dispatcher.handle_sends([m.data for m in msgs]),
        batch_size=settings.send_batch_size,
        batches_in_flight=settings.send_batches_in_flight,
        hold=breaker.hold,
    )
    # Replies are few: each command a batch of its own, several in flight since each waits on
    # one provider call.
    forwards = PullWorker(
        rt.js,
        rt.nc,
        FORWARD,
        per_message(lambda msg: forwarder.handle(msg.data, subject=msg.subject)),
        batch_size=1,
        batches_in_flight=settings.forward_concurrency,
    )
    # Unsubscribes the events service could not tie to an address: few, one at a time.
    message_suppressions = MessageSuppressions(rt.engine, rt.clock)
    suppress = PullWorker(
        rt.js, rt.nc, SUPPRESS, per_message(lambda msg: message_suppressions.handle(msg.data, subject=msg.subject))
    )
    unknown_sweep = Poller(
        lambda: unconfirmed.resolve_unknown(
            resend_after=timedelta(seconds=settings.unknown_resend_after_seconds),
            deadline=timedelta(seconds=settings.unknown_deadline_seconds),
        ),
        full=1000,
        poll_seconds=settings.unknown_sweep_seconds,
        name="unknown-resolution",
    )

    counter_pruner = Poller(
        rate_limits.prune_rate_counters,
        full=PRUNE_BATCH,
        poll_seconds=settings.counter_prune_seconds,
        name="rate-counters",
    )

    async def on_engagements(msgs: list[Msg]) -> None:
        # Both are idempotent, so a redelivery after either one committed changes nothing.
        events = engagement.read_all(m.data for m in msgs)
        await unconfirmed.settle_unknown_events(events)
        # After the settling: a drop of a send in doubt first proves it reached SendGrid.
        await drops.handle(events)
        await suppressions.handle_engagements(events)

    engagements = PullWorker(rt.js, rt.nc, ENGAGEMENT, whole_batch(on_engagements), batch_size=engagement.READ_BATCH)
    # Which campaigns have stopped: idempotent (the highest version wins), so batches are safe.
    states = CampaignStates(rt.engine, rt.clock)
    campaigns = PullWorker(
        rt.js,
        rt.nc,
        CAMPAIGNS,
        whole_batch(lambda msgs: states.handle([m.data for m in msgs])),
        batch_size=CAMPAIGN_STATES_BATCH,
    )
    return Parts(
        service_names=SERVICE_NAMES,
        access=ACCESS,
        registrars=registrars(
            messages=Messages(rt.engine),
            rate_limits=rate_limits,
            tasks=Tasks(rt.engine, rt.clock, on_outbox=relay.kick),
            identities=identities,
            suppressions=suppressions,
            forwarding=forwarding,
        ),
        fetchers=[sends, engagements, forwards, campaigns, suppress],
        loops=[relay, unknown_sweep, counter_pruner, *identity_loops],
    )


def main() -> None:
    settings = load_settings(DispatcherSettings)
    configure_logging("dispatcher", log_format=settings.log_format, level=settings.log_level)
    max_deliver = min(spec.max_deliver for spec in ATTEMPTING)
    if settings.max_attempts >= max_deliver:
        raise SystemExit(
            "DISPATCHER_MAX_ATTEMPTS must be below the forward consumer's max_deliver "
            f"({max_deliver}), or JetStream dead-letters a message still meant to be retried"
        )
    api_key = api_key_for(settings)
    if settings.sendgrid_api_key is None:
        log.warning(
            "sendgrid.using_local_fake",
            host=settings.sendgrid_api_host,
            hint="SENDGRID_API_KEY is not set: mail goes to this fake SendGrid, not to recipients",
        )
    run_process(serve(settings, api_key))


def new_sender(settings: DispatcherSettings, api_key: str) -> MailSender:
    return AsyncSendGridSender(
        api_key=api_key,
        host=settings.sendgrid_api_host,
        concurrency=settings.sends_in_flight,
        timeout_seconds=settings.send_timeout_seconds,
        connect_timeout_seconds=settings.connect_timeout_seconds,
    )


async def serve(settings: DispatcherSettings, api_key: str) -> None:
    # Made and closed on the service's own loop: the aiohttp session belongs to it.
    sender = new_sender(settings, api_key)
    try:
        await run_service(
            name="dispatcher",
            settings=settings,
            streams=Streams.all(),
            build=lambda rt: build(settings, sender, rt, api_key),
        )
    finally:
        await sender.aclose()


if __name__ == "__main__":
    main()
