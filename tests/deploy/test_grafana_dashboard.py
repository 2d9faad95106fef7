"""The Grafana dashboard in deploy/grafana and the alerting rules in deploy/k8s/monitoring
against the metrics the processes really export.

Every metric a query names must be registered by one of the five processes, or be listed
below as coming from an exporter outside this repository. Renaming a metric, a stream, an
edge route or an outcome kind fails here instead of leaving a panel blank; a new dripiq_
metric fails here until a panel shows it.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import REGISTRY

from dripiq.dispatcher.v1 import messages_pb2
from dripiq_common.bus.contract import Streams
from dripiq_events.edge.app import Edge
from dripiq_events.edge.proofs import MIN_SECRET_CHARS, ParseAuth

DASHBOARD_PATH = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dripiq-dashboard.json"
ALERTS_PATH = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "monitoring" / "alerts.yaml"

# Each process's entry module: importing it registers every metric that process serves.
PROCESS_MODULES = (
    "dripiq_planner.__main__",
    "dripiq_dispatcher.__main__",
    "dripiq_events.__main__",
    "dripiq_scheduler.__main__",
    "dripiq_events.edge.__main__",
)

# Series the dashboard reads that no code in this repository exports.
EXTERNAL_METRICS = {
    # Written by Prometheus itself for every scrape target.
    "up",
    # prometheus-nats-exporter with -jsz=all -prefix=nats, as the NATS Helm chart runs it beside
    # each server. Gauges; several servers may report the same stream or consumer.
    "nats_consumer_num_pending",
    "nats_consumer_num_ack_pending",
    "nats_consumer_num_redelivered",
    "nats_stream_total_messages",
    "nats_stream_last_seq",
}

# The series names prometheus_client writes for a metric family, by its type.
SERIES_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}

LABEL_LISTS = ("by", "without", "on", "ignoring", "group_left", "group_right")
PROMQL_KEYWORDS = {*LABEL_LISTS, "bool", "and", "or", "unless", "offset", "inf", "nan"}
STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
MATCHER = re.compile(r'([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
LABEL_VALUES = re.compile(r"label_values\((.+),\s*[a-zA-Z_]\w*\)")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_PATH.read_text())


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Top-level panels and those folded inside collapsed rows."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression: panel targets and the selectors of query variables."""
    exprs = [target["expr"] for panel in all_panels(dashboard) for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = LABEL_VALUES.fullmatch(variable["query"]["query"])
            assert match, f"variable {variable['name']}: expected label_values(<selector>, <label>)"
            exprs.append(match.group(1))
    return exprs


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS_PATH.read_text())["spec"]["groups"] for rule in group["rules"]]


def all_exprs() -> list[str]:
    """Every PromQL expression the dashboard and the alerting rules evaluate."""
    return queries(load_dashboard()) + [str(rule["expr"]) for rule in alert_rules()]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: what is left once strings, dashboard
    variables, label matchers, ranges, label lists, functions and keywords are taken out."""
    text = STRING.sub('""', expr)
    text = re.sub(r"\$\{?\w+\}?", "", text)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", text)
    text = re.sub(rf"\b(?:{'|'.join(LABEL_LISTS)})\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[a-zA-Z_:][\w:]*", text):
        is_call = text[match.end() :].lstrip().startswith("(")
        if not is_call and match.group().lower() not in PROMQL_KEYWORDS:
            names.add(match.group())
    return names


def used_metrics(exprs: list[str] | None = None) -> set[str]:
    return set().union(*(metric_names(expr) for expr in (all_exprs() if exprs is None else exprs)))


def exported_series() -> dict[str, set[str]]:
    """Series names by metric family, for everything the processes register at import.

    Names come from each family's type as well as its samples: a labelled metric has no
    sample until its first label values are used.
    """
    for name in PROCESS_MODULES:
        importlib.import_module(name)
    series: dict[str, set[str]] = {}
    for family in REGISTRY.collect():
        names = {family.name + suffix for suffix in SERIES_SUFFIXES.get(family.type, ("",))}
        series[family.name] = names | {sample.name for sample in family.samples}
    return series


def edge_routes() -> set[str]:
    # A stand-in connection: building the routes only reads the server's max_payload.
    edge = Edge(
        js=None,  # type: ignore[arg-type]
        nc=SimpleNamespace(max_payload=1 << 20),  # type: ignore[arg-type]
        verifiers=(SimpleNamespace(),),  # type: ignore[arg-type]
        signer=None,  # type: ignore[arg-type]
        signature_tolerance_seconds=600,
        parse_auth=ParseAuth(url_secret="x" * MIN_SECRET_CHARS),
    )
    # The edge counts a request that matched no route under "unmatched".
    routes = [*edge.app().router.resources(), *edge.metrics_app().router.resources()]
    return {resource.canonical for resource in routes} | {"unmatched"}


def stream_names() -> set[str]:
    return {spec.name for spec in Streams.all()}


def outcome_kinds() -> set[str]:
    return {name.removeprefix("OUTCOME_KIND_").lower() for name in messages_pb2.OutcomeKind.keys()}


# The labels whose values queries spell out, with where the code keeps those values.
SPELLED_LABELS: dict[str, Callable[[], set[str]]] = {
    "stream_name": stream_names,
    "route": edge_routes,
    "kind": outcome_kinds,
}


# Grafana's interval variables, as Prometheus would see them once Grafana filled them in.
GRAFANA_INTERVALS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def test_every_expression_is_valid_promql() -> None:
    for expr in all_exprs():
        for variable, value in GRAFANA_INTERVALS.items():
            expr = expr.replace(variable, value)
        try:
            promql_parser.parse(expr)
        except ValueError as exc:
            pytest.fail(f"{expr}: {exc}")


def test_metric_names_are_read_from_selectors_only() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, route) (rate(a_seconds_bucket{job=~"$job", x="b_total"}[$__rate_interval])))'
        " / on (job) group_left ignoring (le) sum without (instance) (c_total offset 5m) > bool 1e3"
    )
    assert metric_names(expr) == {"a_seconds_bucket", "c_total"}
    assert metric_names("up") == {"up"}


def test_the_dashboard_has_a_grafana_shape() -> None:
    dashboard = load_dashboard()
    assert dashboard["title"] and dashboard["uid"]
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, variable["name"]

    panels = list(all_panels(dashboard))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel["description"], panel["id"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"] == DATASOURCE, panel["title"]


def test_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in load_dashboard()["panels"]:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_every_metric_a_query_names_is_exported() -> None:
    ours = set().union(*exported_series().values())
    used = used_metrics()
    assert not EXTERNAL_METRICS & ours, "an external metric is exported here; drop it from EXTERNAL_METRICS"
    assert sorted(used - ours - EXTERNAL_METRICS) == []
    assert sorted(EXTERNAL_METRICS - used) == [], "EXTERNAL_METRICS lists metrics no query uses"


def test_every_dripiq_metric_has_a_panel() -> None:
    used = used_metrics(queries(load_dashboard()))
    missing = [
        family for family, names in exported_series().items() if family.startswith("dripiq_") and not names & used
    ]
    assert sorted(missing) == []


@pytest.mark.parametrize("label", sorted(SPELLED_LABELS))
def test_label_values_spelled_out_in_queries_exist(label: str) -> None:
    known = SPELLED_LABELS[label]()
    spelled = {
        value
        for expr in all_exprs()
        for name, _, pattern in MATCHER.findall(expr)
        if name == label and "$" not in pattern
        for value in pattern.split("|")
    }
    assert spelled, f"no query spells out a {label}"
    assert sorted(spelled - known) == []


def test_alerts_say_how_bad_and_what_to_look_at() -> None:
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), "alert names repeat"
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        # Our own series are scoped to the suite's namespace, as the overlays deploy it.
        for selector in re.findall(r"(dripiq_\w+)\{([^}]*)\}", str(rule["expr"])):
            assert 'namespace="dripiq"' in selector[1], f"{rule['alert']}: {selector[0]} not scoped"


async def test_the_webhook_5xx_alert_counts_failures_not_requests_shed_on_purpose() -> None:
    """Past EDGE_MAX_IN_FLIGHT the edge answers 503 by design (SendGrid retries); the critical
    alert reads dripiq_edge_requests, so those 503s must land in dripiq_edge_shed instead, which
    a warning of its own watches."""
    from aiohttp.test_utils import TestClient, TestServer

    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert used_metrics([str(rules["DripiqWebhookServerErrors"]["expr"])]) == {"dripiq_edge_requests_total"}
    shedding = rules["DripiqEdgeShedding"]
    assert "dripiq_edge_shed_total" in used_metrics([str(shedding["expr"])])
    assert shedding["labels"]["severity"] == "warning"

    edge = Edge(
        js=None,  # type: ignore[arg-type]
        nc=SimpleNamespace(max_payload=1 << 20),  # type: ignore[arg-type]
        verifiers=(SimpleNamespace(),),  # type: ignore[arg-type]
        signer=None,  # type: ignore[arg-type]
        signature_tolerance_seconds=600,
        parse_auth=ParseAuth(url_secret="x" * MIN_SECRET_CHARS),
        max_in_flight=0,  # every request is shed before any handler runs
    )
    route = "/webhooks/sendgrid/events"

    def sample(name: str, labels: dict[str, str]) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    failed = sample("dripiq_edge_requests_total", {"route": route, "status": "503"})
    shed = sample("dripiq_edge_shed_total", {"route": route})
    async with TestClient(TestServer(edge.app(), host="127.0.0.1")) as client:
        answer = await client.post(route, data=b"[]")
        assert answer.status == 503 and answer.headers["Retry-After"]
    assert sample("dripiq_edge_requests_total", {"route": route, "status": "503"}) == failed
    assert sample("dripiq_edge_shed_total", {"route": route}) == shed + 1
