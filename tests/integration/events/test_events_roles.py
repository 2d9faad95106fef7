"""EVENTS_ROLE, with the real processes: a `query` process answers the events API (the callers'
and the planner's) and consumes nothing; an `ingest` process consumes and serves no API; a role
that is none of them stops start-up naming the setting. The suite runs events as deployed
(Suite.events_query): "events-query" on the events ports, "events" ingesting on its own."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.js.api import ConsumerInfo
from suites import running_suite

from dripiq.events.v1 import events_service_pb2 as pb
from dripiq.events.v1 import events_service_pb2_grpc as pb_grpc
from dripiq.planner.v1 import campaign_service_pb2 as planner_pb
from dripiq.planner.v1 import campaign_service_pb2_grpc as planner_grpc
from dripiq_common.bus.contract import Consumers
from dripiq_devtools.fake_sendgrid import FakeSendGrid
from dripiq_devtools.servers import SetupError
from dripiq_devtools.suite import REPO, Suite, Topology
from dripiq_events.edge.app import EVENTS_PATH

WEBHOOKS = Consumers.EVENTS_WEBHOOKS
TODAY = datetime.now(UTC).date().isoformat()
# Rounds of calls to the query process while a batch waits on its consumer: were the query
# process fetching, the batch would be delivered to it long before these end.
QUIET_ROUNDS = 20


@pytest.fixture(scope="module")
def suite() -> Iterator[Suite]:
    with running_suite(
        "roles",
        fake_auto_events_delay=0,
        events_query=True,
    ) as running:
        yield running


def tenant_stats(suite: Suite, port_env: str, tenant: str) -> pb.GetTenantStatsResponse:
    with suite.blocking_channel(port_env) as channel:
        return pb_grpc.EventsServiceStub(channel).GetTenantStats(
            pb.GetTenantStatsRequest(tenant_id=tenant, start_day=TODAY, end_day=TODAY), timeout=10
        )


def webhooks_consumer(suite: Suite) -> ConsumerInfo:
    async def ask() -> ConsumerInfo:
        nc = await suite.nats_connect()
        try:
            return await nc.jetstream().consumer_info(WEBHOOKS.stream.name, WEBHOOKS.durable)
        finally:
            await nc.close()

    return asyncio.run(ask())


def post_batch(suite: Suite) -> int:
    """One signed Event Webhook batch at the edge, as SendGrid posts it; the edge answers 200 once
    JetStream holds it."""
    fake = FakeSendGrid(private_key_pem=(suite.run_dir / "fake-sendgrid-key.pem").read_bytes())
    event = {
        "email": "someone@example.com",
        "event": "delivered",
        "timestamp": int(time.time()),
        "sg_event_id": f"roles-{uuid.uuid4()}",
        "sg_message_id": "not-ours.filter0001",
    }
    return asyncio.run(fake.post_events(f"http://127.0.0.1:{suite.port('EDGE_PORT')}{EVENTS_PATH}", [event]))


def test_the_query_process_answers_callers_and_the_planner(suite: Suite) -> None:
    tenant = f"roles-{uuid.uuid4().hex[:8]}"
    answer = tenant_stats(suite, "EVENTS_GRPC_PORT", tenant)
    assert sum(row.counts.sent for row in answer.rows) == 0
    # The planner asks events on the events internal port, which is the query process's.
    with suite.blocking_channel("PLANNER_GRPC_PORT") as channel:
        planned = planner_grpc.CampaignServiceStub(channel).GetTenantStats(
            planner_pb.GetTenantStatsRequest(tenant_id=tenant, start_day=TODAY, end_day=TODAY), timeout=10
        )
    assert planned.HasField("engagement")


def test_the_query_process_consumes_nothing_and_ingest_does(suite: Suite) -> None:
    suite.kill("events")
    try:
        before = webhooks_consumer(suite)
        assert post_batch(suite) == 200
        waiting = webhooks_consumer(suite)
        assert waiting.num_pending == before.num_pending + 1
        for _ in range(QUIET_ROUNDS):
            # Answered: the query process is alive and its event loop turns.
            tenant_stats(suite, "EVENTS_GRPC_PORT", "roles-quiet")
            now = webhooks_consumer(suite)
            assert now.delivered.stream_seq == before.delivered.stream_seq, "the query process fetched a batch"
            assert now.num_pending == waiting.num_pending and now.num_ack_pending == 0
            # No pull request outstanding: nothing in this suite asks the consumer for messages.
            assert now.num_waiting == 0
    finally:
        suite.restart("events")
    # The ingest process takes the batch the query process left.
    deadline = time.monotonic() + 60
    consumed = webhooks_consumer(suite)
    while consumed.num_pending or consumed.num_ack_pending:
        assert time.monotonic() < deadline, f"the ingest process did not consume the batch: {consumed}"
        time.sleep(0.2)
        consumed = webhooks_consumer(suite)
    assert consumed.delivered.stream_seq > before.delivered.stream_seq


def test_the_ingest_process_is_healthy_and_serves_no_api(suite: Suite) -> None:
    port_env = suite.port_env_of("events")
    assert port_env != "EVENTS_GRPC_PORT"
    with suite.blocking_channel(port_env) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as refused:
        tenant_stats(suite, port_env, "roles-misrouted")
    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize("role", ["reporting", "", "QUERY "])
def test_a_role_that_is_none_of_them_stops_start_up_naming_the_setting(role: str) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("EVENTS_")},
        "EVENTS_ROLE": role,
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "DRIPIQ_TOKEN_SECRET": "a" * 40,
    }
    done = subprocess.run(
        [sys.executable, "-m", "dripiq_events"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "EVENTS_ROLE" in done.stderr and "'all', 'query' or 'ingest'" in done.stderr, done.stderr


def test_make_run_reads_the_events_query_setting() -> None:
    assert Topology.from_env({"DRIPIQ_EVENTS_QUERY": "1"}).events_query
    assert not Topology.from_env({}).events_query
    assert "events-query x1" in Topology.from_env({"DRIPIQ_EVENTS_QUERY": "1"}).describe()
    with pytest.raises(SetupError, match="DRIPIQ_EVENTS_QUERY"):
        Topology.from_env({"DRIPIQ_EVENTS_QUERY": "yes"})
