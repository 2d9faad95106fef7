"""NATS as a 3-node JetStream cluster on this machine: it forms, the bus's streams get three
replicas, a stored message outlives the node that led its stream, a node that comes back
catches up, and the whole suite keeps sending with one node down."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.api import StreamConfig
from suites import running_suite
from waiting import eventually_blocking as eventually

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as dpb
from dripiq.dispatcher.v1 import dispatcher_service_pb2_grpc as dpb_grpc
from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import campaign_service_pb2_grpc as pb_grpc
from dripiq_common.bus.client import servers
from dripiq_common.bus.contract import Streams
from dripiq_common.bus.setup import set_up
from dripiq_devtools.servers import EmbeddedNatsCluster, SetupError
from dripiq_devtools.suite import DEMO_DOMAINS, Suite, Topology

PROBE = "CLUSTER_PROBE"


def monitor(node_port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{node_port}{path}", timeout=5) as response:
        return json.loads(response.read())


def stream_messages_on(node_port: int, stream: str) -> int | None:
    """How many messages this node's copy of `stream` holds (None: it holds no copy yet)."""
    body = monitor(node_port, "/jsz?streams=true")
    for account in body.get("account_details", []):
        for detail in account.get("stream_detail", []):
            if detail["name"] == stream:
                return int(detail["state"]["messages"])
    return None


@pytest.fixture(scope="module")
def cluster() -> Iterator[EmbeddedNatsCluster]:
    root = Path(tempfile.mkdtemp(prefix="dripiq-nats-cluster-"))
    running = EmbeddedNatsCluster(root / "nats", size=3).start()
    yield running
    running.stop()
    shutil.rmtree(root, ignore_errors=True)


def test_the_cluster_forms_and_names_one_meta_leader(cluster: EmbeddedNatsCluster) -> None:
    leader = cluster.wait_for_meta_leader()
    assert leader in {node.server_name for node in cluster.nodes}
    for node in cluster.nodes:
        meta = monitor(node.monitor_port, "/jsz")["meta_cluster"]
        assert meta["cluster_size"] == 3
        assert meta["leader"] == leader
    assert servers(cluster.url) == [node.url for node in cluster.nodes]


async def test_the_set_up_step_gives_every_stream_three_replicas(cluster: EmbeddedNatsCluster) -> None:
    await set_up(cluster.url, replicas=3)
    nc = await nats.connect(servers(cluster.url))
    try:
        js = nc.jetstream()
        for spec in Streams.all():
            info = await js.stream_info(spec.name)
            assert info.config.num_replicas == 3, spec.name
            assert info.cluster is not None and info.cluster.leader
            assert len(info.cluster.replicas or []) == 2, spec.name
    finally:
        await nc.close()


async def publish_acked(js: Any, subject: str, n: int) -> None:
    """Publish until JetStream acks, the same message id each time, so a retry across a leader
    change stores nothing twice."""
    for attempt in range(60):
        try:
            await js.publish(subject, f"m{n}".encode(), headers={"Nats-Msg-Id": f"probe-{n}"}, timeout=2)
            return
        except Exception:  # noqa: BLE001 - no responders / timeouts while a new leader is elected
            if attempt == 59:
                raise
            await asyncio.sleep(0.5)


async def test_stored_messages_outlive_their_stream_leader_and_it_catches_up(cluster: EmbeddedNatsCluster) -> None:
    nc = await nats.connect(servers(cluster.url), max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name=PROBE, subjects=["probe.>"], num_replicas=3))
        for n in range(100):
            await publish_acked(js, "probe.a", n)
        info = await js.stream_info(PROBE)
        assert info.cluster is not None
        leader = next(i for i, node in enumerate(cluster.nodes) if node.server_name == info.cluster.leader)
        port = cluster.nodes[leader].monitor_port

        cluster.kill_node(leader)
        cluster.wait_for_meta_leader()
        for n in range(100, 200):
            await publish_acked(js, "probe.a", n)
        for n in range(150):  # sent again: the stream keeps one of each
            await publish_acked(js, "probe.a", n)
        info = await js.stream_info(PROBE)
        assert info.state.messages == 200
        assert info.cluster is not None and info.cluster.leader != cluster.nodes[leader].server_name
        bodies = [(await js.get_msg(PROBE, seq)).data for seq in range(1, 201)]
        assert bodies == [f"m{n}".encode() for n in range(200)]

        await asyncio.to_thread(cluster.start_node, leader)
        caught_up = await asyncio.to_thread(
            eventually, lambda: stream_messages_on(port, PROBE) == 200, "the restarted node's copy to catch up"
        )
        assert caught_up
    finally:
        await nc.close()


def test_topology_from_the_environment() -> None:
    topology = Topology.from_env({"DRIPIQ_NATS_CLUSTER": "3", "DRIPIQ_REPLICAS": "2", "DRIPIQ_REPLICAS_EDGE": "1"})
    assert topology.nats_nodes == 3 and topology.stream_replicas == 3
    assert topology.replicas == {"planner": 2, "dispatcher": 2, "events": 2, "scheduler": 2}
    assert Topology.from_env({"DRIPIQ_NATS_CLUSTER": "5"}).stream_replicas == 3
    assert Topology.from_env({}).describe().startswith("NATS single node, streams R1")
    for bad in ("0", "two", "-1"):
        with pytest.raises(SetupError, match="DRIPIQ_REPLICAS"):
            Topology.from_env({"DRIPIQ_REPLICAS": bad})


def test_nats_url_lists_servers_comma_separated() -> None:
    assert servers("nats://a:1") == ["nats://a:1"]
    assert servers(" nats://u:p@a:1, nats://u:p@b:2 ,") == ["nats://u:p@a:1", "nats://u:p@b:2"]
    with pytest.raises(ValueError, match="no server"):
        servers(" , ")


ALWAYS = pb.SendWindow(weekdays=[1, 2, 3, 4, 5, 6, 7], start_hour=0, end_hour=24)
TENANT = "acme-cluster"


def fake_messages(suite: Suite, campaign_id: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{suite.env['SENDGRID_API_HOST']}/_fake/messages", timeout=10) as response:
        found = json.loads(response.read())["messages"]
    return [m for m in found if m["custom_args"].get("campaign_id") == campaign_id]


def test_the_suite_sends_with_one_node_down_and_the_node_catches_up() -> None:
    with running_suite(
        "cluster-suite",
        fake_auto_events_delay=0,
        nats_nodes=3,
        replicas={"dispatcher": 2, "scheduler": 2},
        extra_env={"SCHEDULER_POLL_SECONDS": "0.1", "PLANNER_OUTBOX_POLL_SECONDS": "0.2"},
    ) as suite:
        assert suite.env["JETSTREAM_REPLICAS"] == "3"
        cluster = suite.nats_cluster()
        cluster.kill_node(0)
        cluster.wait_for_meta_leader()

        with suite.blocking_channel("DISPATCHER_GRPC_PORT") as ch:
            identities = dpb_grpc.SenderIdentityServiceStub(ch)
            identity = identities.CreateSenderIdentity(
                dpb.CreateSenderIdentityRequest(
                    tenant_id=TENANT, from_email=f"sales@{DEMO_DOMAINS[0]}", from_name="Sales"
                ),
                timeout=30,
            ).sender_identity
            identities.VerifySenderIdentity(
                dpb.VerifySenderIdentityRequest(tenant_id=TENANT, sender_identity_id=identity.sender_identity_id),
                timeout=30,
            )
        with suite.blocking_channel("PLANNER_GRPC_PORT") as ch:
            created = pb_grpc.CampaignServiceStub(ch).CreateCampaign(
                pb.CreateCampaignRequest(
                    tenant_id=TENANT,
                    request_id="cluster-1",
                    lead=pb.Lead(lead_id="lead-1", company_name="Initech"),
                    contact=pb.Contact(contact_id="c-1", email="peter@example.com", first_name="Peter"),
                    product=pb.Product(product_id="p-1", name="Widget"),
                    sender_identity_id=identity.sender_identity_id,
                    send_window=ALWAYS,
                    strategy=pb.Strategy(
                        outreach_campaign=[
                            pb.OutreachStep(type="email", timing="Day 0", subject="Hello", content="About Widget")
                        ]
                    ),
                ),
                timeout=30,
            )
        campaign_id = created.campaign.campaign_id
        sent = eventually(lambda: fake_messages(suite, campaign_id), "step 0 at SendGrid with a node down", timeout=60)
        assert len(sent) == 1

        cluster.start_node(0)
        back, stayed = cluster.nodes[0].monitor_port, cluster.nodes[1].monitor_port
        outcomes = Streams.MESSAGE_OUTCOMES.name

        def caught_up() -> bool:
            held = stream_messages_on(stayed, outcomes)
            return bool(held) and stream_messages_on(back, outcomes) == held

        eventually(caught_up, "the restarted node's copy of the outcomes to catch up")
        assert len(fake_messages(suite, campaign_id)) == 1
