"""deploy/k8s: every kustomization renders with kustomize (kubectl's), every rendered object
validates offline against the Kubernetes API schemas (kubernetes-validate, strict: unknown
fields fail) or, for KEDA and CloudNativePG objects, against tests/deploy/k8s_schemas, and
every process runs hardened, probed and described as the deploy docs say."""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBECTL = Path(sys.executable).parent / "kubectl"
KUBERNETES_VERSION = "1.33.0"
SCHEMAS = Path(__file__).parent / "k8s_schemas"
CUSTOM = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-keda.sh-v1alpha1.json",
    ("postgresql.cnpg.io/v1", "Cluster"): "cluster-postgresql.cnpg.io-v1.json",
    ("postgresql.cnpg.io/v1", "Pooler"): "pooler-postgresql.cnpg.io-v1.json",
    ("cert-manager.io/v1", "Certificate"): "certificate-cert-manager.io-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring.coreos.com-v1.json",
}
KUSTOMIZATIONS = [
    "base",
    "base/migrations",
    "overlays/dev",
    "overlays/dev/migrations",
    "overlays/prod",
    "overlays/prod/migrations",
    "deps/postgres",
    "monitoring",
]
SERVICE_OVERLAYS = ["base", "overlays/dev", "overlays/prod"]
# Process -> (port name, port): the gRPC ones answer the standard health service. The events
# ingest pods ("dripiq-events", EVENTS_ROLE=ingest) serve no API: health and metrics alone.
PROCESSES = {
    "dripiq-planner": ("grpc", 50051),
    "dripiq-dispatcher": ("grpc", 50052),
    "dripiq-events": ("health", 50253),
    "dripiq-events-query": ("grpc", 50053),
    "dripiq-scheduler": ("grpc", 50054),
    "dripiq-edge": ("http", 8080),
}
# The Service each process is reached by (the events API, dripiq-events, by the query pods) and
# the service name its certificate carries; the ingest pods are reached by no Service.
SERVICE_OF = {name: name for name in PROCESSES} | {"dripiq-events-query": "dripiq-events", "dripiq-events": None}
IDENTITY_OF = {name: name.removeprefix("dripiq-") for name in PROCESSES} | {"dripiq-events-query": "events"}
SCALED_ON_LAG = {"dripiq-planner", "dripiq-dispatcher", "dripiq-events"}
# The processes' own shutdown grace (ServiceSettings.shutdown_grace_seconds, EdgeSettings).
SHUTDOWN_GRACE_SECONDS = 10
# The one command that applies migrations, in the images and from a clone (make migrate).
MIGRATIONS_MODULE = "dripiq_common.migrations"


@functools.cache
def render(kustomization: str) -> tuple[dict[str, Any], ...]:
    result = subprocess.run(
        [str(KUBECTL), "kustomize", str(K8S / kustomization)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"kustomize {kustomization}: {result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def of_kind(kustomization: str, kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in render(kustomization) if doc["kind"] == kind}


@functools.cache
def custom_schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / name).read_text())


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_rendered_object_validates(kustomization):
    docs = render(kustomization)
    assert docs, f"{kustomization} rendered nothing"
    for doc in docs:
        where = f"{kustomization}: {doc['kind']}/{doc['metadata']['name']}"
        custom = CUSTOM.get((doc["apiVersion"], doc["kind"]))
        if custom:
            errors = sorted(jsonschema.Draft202012Validator(custom_schema(custom)).iter_errors(doc), key=str)
            assert not errors, f"{where}: {[f'{list(e.path)}: {e.message}' for e in errors]}"
        else:
            try:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.utils.ValidationError as exc:
                pytest.fail(f"{where}: {exc.message} at {list(exc.path)}")


def test_a_bad_object_is_caught():
    """The checks above can fail: a misspelt field and a wrong type are both refused."""
    deployment = dict(of_kind("base", "Deployment")["dripiq-planner"])
    with pytest.raises(kubernetes_validate.utils.ValidationError):
        kubernetes_validate.validate({**deployment, "spec": {**deployment["spec"], "replica": 2}}, "1.33.0", True)
    scaled = of_kind("base", "ScaledObject")["dripiq-planner"]
    broken = {**scaled, "spec": {**scaled["spec"], "maxReplicaCount": "many"}}
    assert list(
        jsonschema.Draft202012Validator(custom_schema(CUSTOM[("keda.sh/v1alpha1", "ScaledObject")])).iter_errors(broken)
    )


@pytest.mark.parametrize("kustomization", SERVICE_OVERLAYS)
@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_each_process_runs_hardened_probed_and_bounded(kustomization, name):
    deployment = of_kind(kustomization, "Deployment")[name]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    port_name, port = PROCESSES[name]

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["terminationGracePeriodSeconds"] > SHUTDOWN_GRACE_SECONDS
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert pod["serviceAccountName"] == name
    assert name in of_kind(kustomization, "ServiceAccount")
    assert {"name": port_name, "containerPort": port} in container["ports"]
    for probe in ("readinessProbe", "livenessProbe"):
        if port_name in ("grpc", "health"):
            # The kubelet's gRPC probe speaks plaintext: it asks the health-only port.
            health = port + 200 if port_name == "grpc" else port
            assert {"name": "health", "containerPort": health} in container["ports"]
            assert container[probe]["grpc"] == {"port": health}, f"{name} {probe}: gRPC probe on its health port"
        else:
            assert container[probe]["httpGet"]["port"] == "http"
    if SERVICE_OF[name] is not None:
        service = of_kind(kustomization, "Service")[SERVICE_OF[name]]
        assert port_name in {p["name"] for p in service["spec"]["ports"]}
        assert service["spec"]["selector"].items() <= deployment["spec"]["selector"]["matchLabels"].items()
    pdb = of_kind(kustomization, "PodDisruptionBudget")[name]
    assert (
        pdb["spec"]["selector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )


@pytest.mark.parametrize("kustomization", SERVICE_OVERLAYS)
def test_scaling_on_consumer_lag_and_cpu(kustomization):
    scaled = of_kind(kustomization, "ScaledObject")
    assert set(scaled) == SCALED_ON_LAG
    for name, obj in scaled.items():
        assert obj["spec"]["scaleTargetRef"]["name"] == name
        assert {t["type"] for t in obj["spec"]["triggers"]} == {"nats-jetstream"}
    consumers = {t["metadata"]["consumer"] for obj in scaled.values() for t in obj["spec"]["triggers"]}
    assert {"dispatcher-send", "planner-engagement", "planner-planning", "events-webhooks"} <= consumers
    # The edge and the events query pods have no backlog to scale on: CPU.
    hpas = of_kind(kustomization, "HorizontalPodAutoscaler")
    assert set(hpas) == {"dripiq-edge", "dripiq-events-query"}
    for name, hpa in hpas.items():
        assert hpa["spec"]["scaleTargetRef"]["name"] == name
        assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


def test_secrets_are_referenced_never_written():
    for kustomization in KUSTOMIZATIONS:
        assert not of_kind(kustomization, "Secret"), f"{kustomization} must only refer to Secrets"
    env = {
        e["name"]: e.get("valueFrom", {}).get("secretKeyRef", {}).get("name")
        for d in of_kind("base", "Deployment").values()
        for e in d["spec"]["template"]["spec"]["containers"][0].get("env", [])
    }
    assert env["SENDGRID_API_KEY"] == "dripiq-sendgrid"
    assert env["OPENAI_API_KEY"] == "dripiq-openai"
    assert env["SENDGRID_WEBHOOK_PUBLIC_KEY"] == "dripiq-sendgrid"
    for name in ("planner", "dispatcher", "events", "scheduler"):
        container = of_kind("base", "Deployment")[f"dripiq-{name}"]["spec"]["template"]["spec"]["containers"][0]
        refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e}
        # The process connects as its app role; the owner's secret is its migration Job's only.
        assert f"dripiq-db-{name}-app" in refs and f"dripiq-db-{name}" not in refs
        assert not {f"dripiq-db-{o}-app" for o in ("planner", "dispatcher", "events", "scheduler") if o != name} & refs


def test_one_role_per_service_owning_only_its_schema():
    [cluster] = of_kind("deps/postgres", "Cluster").values()
    roles = {r["name"]: r["passwordSecret"]["name"] for r in cluster["spec"]["managed"]["roles"]}
    services = ("planner", "dispatcher", "events", "scheduler")
    # An owner (migrations) and an app role (the processes) per service.
    assert roles == {
        **{s: f"dripiq-db-{s}" for s in services},
        **{f"{s}_app": f"dripiq-db-{s}-app" for s in services},
    }
    sql = cluster["spec"]["bootstrap"]["initdb"]["postInitApplicationSQL"]
    for service in services:
        assert f"CREATE SCHEMA {service} AUTHORIZATION {service}" in sql
    [pooler] = of_kind("deps/postgres", "Pooler").values()
    config = of_kind("base", "ConfigMap")["dripiq-config"]["data"]
    assert pooler["metadata"]["name"] == config["DB_HOST"]
    assert f"{cluster['metadata']['name']}-rw" == config["DB_MIGRATION_HOST"]


@pytest.mark.parametrize("kustomization", ["base/migrations", "overlays/prod/migrations"])
def test_migrations_run_as_a_job_per_service(kustomization):
    jobs = of_kind(kustomization, "Job")
    setup = jobs.pop("dripiq-bus-setup")
    # The bus set-up step runs beside them, as the one NATS user allowed to make streams.
    [container] = setup["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["/opt/venv/bin/python", "-m", "dripiq_common.bus.setup"]
    assert {"name": "NATS_URL", "value": "nats://setup:$(NATS_PASSWORD)@$(NATS_HOST):4222"} in container["env"]
    assert set(jobs) == {f"dripiq-migrate-{s}" for s in ("planner", "dispatcher", "events", "scheduler")}
    for name, job in jobs.items():
        service = name.removeprefix("dripiq-migrate-")
        [container] = job["spec"]["template"]["spec"]["containers"]
        # The image's venv python (tests/deploy/test_images.py), which holds dripiq-common.
        assert container["command"] == ["/opt/venv/bin/python", "-m", MIGRATIONS_MODULE, service]
        assert container["image"].rsplit(":", 1)[0].endswith(f"dripiq/{service}")
        assert job["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_make_migrate_runs_the_command_the_jobs_run():
    """One way to apply migrations: the common library's module, which every image holds (dev
    tools are in none), is what the Jobs run and what `make migrate` runs from the clone."""
    spec = importlib.util.find_spec(MIGRATIONS_MODULE)
    assert spec is not None and spec.origin is not None
    assert Path(spec.origin).is_relative_to(ROOT / "libs" / "common" / "src")
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^migrate:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe, "the Makefile has no migrate target"
    assert [shlex.split(line) for line in recipe[1].splitlines()] == [["$(PY)", "-m", MIGRATIONS_MODULE]]


def test_only_the_edge_takes_traffic_from_outside_the_namespace():
    policies = of_kind("base", "NetworkPolicy")
    deny = policies["dripiq-default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    for name, policy in policies.items():
        for rule in policy["spec"].get("ingress", []):
            sources = rule.get("from")
            if name == "dripiq-edge-public":
                assert sources is None, "the edge is reachable from anywhere"
                continue
            assert sources, f"{name}: an ingress rule without sources admits everyone"
            for source in sources:
                outside = "namespaceSelector" in source or "ipBlock" in source
                metrics_only = {p["port"] for p in rule["ports"]} <= {"metrics", "http"}
                assert not outside or metrics_only, f"{name}: only metrics may be scraped from outside"


@pytest.mark.parametrize("kustomization", SERVICE_OVERLAYS)
def test_the_edge_serves_metrics_only_on_its_own_port(kustomization):
    """Prometheus scrapes the edge's metrics port; the internet reaches only its public one."""
    from dripiq_events.edge.settings import EdgeSettings

    deployment = of_kind(kustomization, "Deployment")["dripiq-edge"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    config = of_kind(kustomization, "ConfigMap")["dripiq-config"]["data"]
    assert ports == {"http": int(config["EDGE_PORT"]), "metrics": int(config["EDGE_METRICS_PORT"])}
    assert ports["metrics"] == EdgeSettings.model_fields["metrics_port"].default
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(ports["metrics"])
    service = of_kind(kustomization, "Service")["dripiq-edge"]
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    policies = of_kind(kustomization, "NetworkPolicy")
    [public] = policies["dripiq-edge-public"]["spec"]["ingress"]
    assert public["ports"] == [{"port": ports["http"], "protocol": "TCP"}]
    [scrape] = policies["dripiq-metrics-scrape"]["spec"]["ingress"]
    assert [p["port"] for p in scrape["ports"]] == ["metrics"]


def test_prod_runs_spread_replicas_with_three_stream_replicas():
    for name, deployment in of_kind("overlays/prod", "Deployment").items():
        assert deployment["spec"]["replicas"] >= 2, name
        pod = deployment["spec"]["template"]["spec"]
        assert pod["affinity"]["podAntiAffinity"], name
        assert pod["topologySpreadConstraints"], name
    assert of_kind("overlays/prod", "ConfigMap")["dripiq-config"]["data"]["JETSTREAM_REPLICAS"] == "3"
    for obj in of_kind("overlays/prod", "ScaledObject").values():
        assert obj["spec"]["minReplicaCount"] >= 2
    dev = of_kind("overlays/dev", "Deployment")
    assert all(d["spec"]["replicas"] == 1 for d in dev.values())
    assert of_kind("overlays/dev", "ConfigMap")["dripiq-config"]["data"]["JETSTREAM_REPLICAS"] == "1"


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and In / NotIn / Exists / DoesNotExist)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for rule in selector.get("matchExpressions", []):
        key, op, values = rule["key"], rule["operator"], rule.get("values", [])
        present = key in labels
        if (
            (op == "In" and labels.get(key) not in values)
            or (op == "NotIn" and labels.get(key) in values)
            or (op == "Exists" and not present)
            or (op == "DoesNotExist" and present)
        ):
            return False
    return True


def pod_labels() -> dict[str, dict[str, str]]:
    """The pods' labels of every process and migration Job, as rendered."""
    workloads = {**of_kind("overlays/prod", "Deployment"), **of_kind("overlays/prod/migrations", "Job")}
    return {name: w["spec"]["template"]["metadata"]["labels"] for name, w in workloads.items()}


def reaches_postgres(policies: dict[str, dict[str, Any]], labels: dict[str, str]) -> bool:
    """Whether some policy lets a pod with these labels reach the PostgreSQL cluster's port."""
    return any(
        "Egress" in policy["spec"]["policyTypes"]
        and selects(policy["spec"]["podSelector"], labels)
        and any(
            {"port": 5432, "protocol": "TCP"} in rule.get("ports", [])
            and any(t.get("podSelector", {}).get("matchLabels", {}).get("cnpg.io/cluster") for t in rule["to"])
            for rule in policy["spec"].get("egress", [])
        )
        for policy in policies.values()
    )


def test_every_network_policy_selects_pods_and_every_pod_reaches_dns_and_nats():
    pods = pod_labels()
    policies = of_kind("overlays/prod", "NetworkPolicy")
    for name, policy in policies.items():
        selected = [pod for pod, labels in pods.items() if selects(policy["spec"]["podSelector"], labels)]
        assert selected, f"{name} selects no pod: its rules would never apply"
    dns_nats = policies["dripiq-egress-dns-nats"]["spec"]["podSelector"]
    for pod, labels in pods.items():
        assert selects(dns_nats, labels), f"{pod} could not resolve names or reach NATS"
        assert reaches_postgres(policies, labels) == (pod not in ("dripiq-edge", "dripiq-bus-setup")), (
            f"{pod}: PostgreSQL for all but the edge and the bus set-up"
        )


@pytest.mark.parametrize("kustomization", SERVICE_OVERLAYS)
def test_every_grpc_service_serves_tls_from_its_own_certificate(kustomization):
    config = of_kind(kustomization, "ConfigMap")["dripiq-config"]["data"]
    certificates = of_kind(kustomization, "Certificate")
    for name, (port_name, port) in PROCESSES.items():
        if port_name != "grpc":
            continue
        service = IDENTITY_OF[name]
        pod = of_kind(kustomization, "Deployment")[name]["spec"]["template"]["spec"]
        [container] = pod["containers"]
        [tls] = [v for v in pod["volumes"] if v["name"] == "tls"]
        secret = tls["secret"]["secretName"]
        [certificate] = [c for c in certificates.values() if c["spec"]["secretName"] == secret]
        # Its certificate names it as the others recognise it (AUTH_SERVICE_NAMES).
        assert certificate["spec"]["commonName"] == service
        assert {"server auth", "client auth"} <= set(certificate["spec"]["usages"])
        mount = next(m for m in container["volumeMounts"] if m["name"] == "tls")
        assert mount["readOnly"] is True
        for variable in ("TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CA_FILE"):
            assert config[variable].startswith(mount["mountPath"] + "/")
        assert {"name": "grpc-internal", "containerPort": port + 100} in container["ports"]
    assert config["AUTH_JWT_ISSUER"] and (config.get("AUTH_JWKS_URL") or config.get("AUTH_JWT_PUBLIC_KEYS_FILE"))
    # The planner calls the others on their mutual-TLS ports; nothing runs without security.
    assert config["PLANNER_DISPATCHER_ADDRESS"].endswith(":50152")
    assert config["PLANNER_EVENTS_ADDRESS"].endswith(":50153")
    assert "DRIPIQ_DEV_INSECURE" not in config
    # PostgreSQL over TLS, verified against the database operator's CA, mounted where it is read.
    assert config["DB_SSLMODE"] == "verify-full"
    for name in ("planner", "dispatcher", "events", "events-query", "scheduler"):
        pod = of_kind(kustomization, "Deployment")[f"dripiq-{name}"]["spec"]["template"]["spec"]
        [ca] = [v for v in pod["volumes"] if v["name"] == "pg-ca"]
        assert ca["secret"]["secretName"] == "dripiq-pg-ca"
        mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "pg-ca")
        assert config["PGSSLROOTCERT"] == f"{mount['mountPath']}/ca.crt"


def test_prod_turns_reflection_off():
    assert of_kind("overlays/prod", "ConfigMap")["dripiq-config"]["data"]["GRPC_REFLECTION"] == "false"


def test_grpc_ingress_is_per_callee():
    policies = of_kind("base", "NetworkPolicy")

    def admitted(pod: str, port: str) -> list[dict]:
        """The pod selectors allowed to reach `port` of `pod`."""
        labels = {"app.kubernetes.io/name": pod}
        found = []
        for policy in policies.values():
            if "Ingress" not in policy["spec"]["policyTypes"] or not selects(policy["spec"]["podSelector"], labels):
                continue
            for rule in policy["spec"].get("ingress", []):
                if any(p["port"] == port for p in rule.get("ports", [])):
                    found += [source["podSelector"] for source in rule.get("from", [])]
        return found

    api_clients = {"matchLabels": {"dripiq.io/api-client": "true"}}
    planner = {"matchLabels": {"app.kubernetes.io/name": "dripiq-planner"}}
    for pod in ("dripiq-planner", "dripiq-dispatcher", "dripiq-events-query"):
        assert admitted(pod, "grpc") == [api_clients]
    # Nobody needs the scheduler's port but operators (port-forward); the events ingest pods
    # serve no API.
    assert admitted("dripiq-scheduler", "grpc") == []
    for pod in ("dripiq-dispatcher", "dripiq-events-query"):
        assert admitted(pod, "grpc-internal") == [planner]
    assert admitted("dripiq-events", "grpc") == admitted("dripiq-events", "grpc-internal") == []


def test_the_events_api_is_served_by_the_query_pods_and_ingest_by_the_others():
    """EVENTS_ROLE (docs/decisions/0057-events-query-role.md): the Service callers and the planner
    know as events routes to the query pods only; the ingest pods are what KEDA scales on lag;
    both are the same image, certificate, NATS user and database role."""
    from dripiq_events.settings import EventsRole

    for kustomization in SERVICE_OVERLAYS:
        deployments = of_kind(kustomization, "Deployment")
        query, ingest = deployments["dripiq-events-query"], deployments["dripiq-events"]

        def role(deployment: dict[str, Any]) -> EventsRole:
            [container] = deployment["spec"]["template"]["spec"]["containers"]
            [value] = [e["value"] for e in container["env"] if e["name"] == "EVENTS_ROLE"]
            return EventsRole(value)

        assert role(query) is EventsRole.QUERY and role(ingest) is EventsRole.INGEST
        service = of_kind(kustomization, "Service")["dripiq-events"]
        pods = {name: d["spec"]["template"]["metadata"]["labels"] for name, d in deployments.items()}
        assert [
            name for name, labels in pods.items() if selects({"matchLabels": service["spec"]["selector"]}, labels)
        ] == ["dripiq-events-query"]
        config = of_kind(kustomization, "ConfigMap")["dripiq-config"]["data"]
        assert config["PLANNER_EVENTS_ADDRESS"].split(":")[0] in {"dripiq-events", "dripiq-events.dripiq.svc"}
        assert (
            of_kind(kustomization, "ScaledObject")["dripiq-events"]["spec"]["scaleTargetRef"]["name"] == "dripiq-events"
        )
        containers = [d["spec"]["template"]["spec"]["containers"][0] for d in (query, ingest)]
        assert len({c["image"] for c in containers}) == 1
        for container in containers:
            env = {e["name"]: e for e in container["env"]}
            assert env["NATS_URL"]["value"].startswith("nats://events:")
            assert env["DB_USER"]["valueFrom"]["secretKeyRef"]["name"] == "dripiq-db-events-app"
        volumes = [{v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]} for d in (query, ingest)]
        assert {v["tls"]["secret"]["secretName"] for v in volumes} == {"dripiq-tls-events"}
        # No Service port leads to the ingest pods' gRPC: they listen for health alone.
        assert not {p["name"] for p in containers[1]["ports"]} & {"grpc", "grpc-internal"}


def test_the_planner_reaches_events_only_on_the_query_pods():
    policies = of_kind("base", "NetworkPolicy")
    planner = {"app.kubernetes.io/name": "dripiq-planner"}
    targets = [
        (peer["podSelector"]["matchLabels"].get("app.kubernetes.io/name"), port["port"])
        for policy in policies.values()
        if "Egress" in policy["spec"]["policyTypes"] and selects(policy["spec"]["podSelector"], planner)
        for rule in policy["spec"].get("egress", [])
        for peer in rule.get("to", [])
        if "podSelector" in peer
        for port in rule.get("ports", [])
    ]
    assert ("dripiq-events-query", 50153) in targets
    assert not [t for t in targets if t[0] == "dripiq-events"]


def test_the_rollout_first_step_applies_the_query_pods_with_everything_they_need():
    """docs/deploy.md applies the objects labelled dripiq-events-query first, before the Service
    switches: among them the pods' own policies (PostgreSQL, their callers, the planner's way in)."""
    first = [
        doc
        for doc in render("overlays/prod")
        if doc["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "dripiq-events-query"
    ]
    assert {(doc["kind"], doc["metadata"]["name"]) for doc in first} == {
        ("ServiceAccount", "dripiq-events-query"),
        ("Deployment", "dripiq-events-query"),
        ("PodDisruptionBudget", "dripiq-events-query"),
        ("HorizontalPodAutoscaler", "dripiq-events-query"),
        ("NetworkPolicy", "dripiq-events-query"),
        ("NetworkPolicy", "dripiq-planner-to-events-query"),
    }
    policies = {doc["metadata"]["name"]: doc for doc in first if doc["kind"] == "NetworkPolicy"}
    query_pod = of_kind("overlays/prod", "Deployment")["dripiq-events-query"]["spec"]["template"]["metadata"]["labels"]
    assert reaches_postgres(policies, query_pod)


def test_nats_users_in_the_chart_values_are_the_contracts():
    """The accounts the NATS chart runs with are what dripiq_common.bus.access makes."""
    import yaml

    from dripiq_common.bus.access import SETUP_USER, USERS, accounts

    values = yaml.safe_load((ROOT / "deploy/k8s/deps/nats/values.yaml").read_text())
    refs = {name: f"<< $NATS_PASSWORD_{name.upper()} >>" for name in [SETUP_USER, *USERS]}
    assert values["config"]["merge"]["accounts"] == accounts(refs)
    for name in refs:
        env = values["container"]["env"][f"NATS_PASSWORD_{name.upper()}"]
        assert env["valueFrom"]["secretKeyRef"] == {"name": "dripiq-nats-users", "key": name}
    # Each process connects as its own user; none manages the streams.
    config = of_kind("base", "ConfigMap")["dripiq-config"]["data"]
    assert config["BUS_SETUP"] == "false"
    for name in USERS:
        [container] = of_kind("base", "Deployment")[f"dripiq-{name}"]["spec"]["template"]["spec"]["containers"]
        assert {"name": "NATS_URL", "value": f"nats://{name}:$(NATS_PASSWORD)@$(NATS_HOST):4222"} in container["env"]


def test_nats_speaks_tls_with_a_certificate_of_the_suites_ca():
    import yaml

    certificate = yaml.safe_load((ROOT / "deploy/k8s/deps/nats/certificate.yaml").read_text())
    schema = custom_schema(CUSTOM[("cert-manager.io/v1", "Certificate")])
    assert not list(jsonschema.Draft202012Validator(schema).iter_errors(certificate))
    assert certificate["spec"]["issuerRef"]["name"] == "dripiq-ca"
    assert "nats.nats.svc.cluster.local" in certificate["spec"]["dnsNames"]
    values = yaml.safe_load((ROOT / "deploy/k8s/deps/nats/values.yaml").read_text())
    assert values["config"]["nats"]["tls"] == {"enabled": True, "secretName": certificate["spec"]["secretName"]}
    # Every process that connects to NATS verifies it against the CA its own TLS secret carries.
    config = of_kind("base", "ConfigMap")["dripiq-config"]["data"]
    deployments = of_kind("base", "Deployment")
    jobs = of_kind("base/migrations", "Job")
    for pod in [d["spec"]["template"]["spec"] for d in deployments.values()] + [
        jobs["dripiq-bus-setup"]["spec"]["template"]["spec"]
    ]:
        mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "tls")
        assert config["NATS_CA_FILE"] == f"{mount['mountPath']}/ca.crt"
