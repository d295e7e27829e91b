"""The Kubernetes manifests in deploy/k8s: valid against the API schemas, and true to the code.

No cluster is needed. Core resources are checked against the Kubernetes JSON Schemas bundled in
`kubernetes-validate` (strict: unknown fields are errors), KEDA's resources against the openAPIV3Schema
of KEDA's own CRDs (vendored in deploy/k8s/schemas), made strict the same way. The field checks tie the
manifests to the code: consumer groups, topics, settings, playbooks, probes and the image's user.
"""

from __future__ import annotations

import copy
import importlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from unittest import mock

import jsonschema
import kubernetes_validate
import pytest
import yaml

from contracts.topics import SERVICES
from shared.playbook import DEFAULT_DOCUMENT, ENVIRONMENT_VARIABLE
from shared.settings import Settings

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
# The oldest Kubernetes minor we claim to run on, and the newest the bundled schemas know.
KUBERNETES_VERSIONS = ("1.32", kubernetes_validate.latest_version())
KEDA_CRDS = {
    "ScaledObject": K8S / "schemas" / "keda.sh_scaledobjects.yaml",
    "TriggerAuthentication": K8S / "schemas" / "keda.sh_triggerauthentications.yaml",
}
# The metadata KEDA's kafka scaler reads (pkg/scalers/kafka_scaler.go, v2.21.0); `...FromEnv` variants
# exist for the resolvedEnv ones. The CRD types trigger metadata as a free map, so typos pass it.
KAFKA_TRIGGER_METADATA = {
    "bootstrapServers",
    "bootstrapServersFromEnv",
    "consumerGroup",
    "consumerGroupFromEnv",
    "topic",
    "topicFromEnv",
    "partitionLimitation",
    "lagThreshold",
    "activationLagThreshold",
    "offsetResetPolicy",
    "allowIdleConsumers",
    "excludePersistentLag",
    "scaleToZeroOnInvalidOffset",
    "limitToPartitionsWithLag",
    "ensureEvenDistributionOfPartitions",
    "version",
    "tls",
    "unsafeSsl",
    "sasl",
    "saslTokenProvider",
    "awsRegion",
}
KEDA_SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}
SECRET_NAME = "dealflow-secrets"


def kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return loaded


def documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


@cache
def resources() -> tuple[dict[str, Any], ...]:
    """Every resource the kustomization lists, as written (before kustomize names and labels them)."""
    return tuple(document for name in kustomization()["resources"] for document in documents(K8S / name))


def resource(kind: str, name: str) -> dict[str, Any]:
    [found] = [r for r in resources() if r["kind"] == kind and r["metadata"]["name"] == name]
    return found


def config() -> dict[str, str]:
    data: dict[str, str] = resource("ConfigMap", "dealflow-config")["data"]
    return data


def deployed_settings() -> Settings:
    """The Settings a pod gets from the ConfigMap's variables, with stand-ins for the Secret's."""
    secrets = {"KAFKA_SASL_USERNAME": "from-secret", "KAFKA_SASL_PASSWORD": "from-secret"}
    with mock.patch.dict(os.environ, config() | secrets, clear=True):
        return Settings()


def container(service: str) -> dict[str, Any]:
    [only] = resource("Deployment", f"dealflow-{service}")["spec"]["template"]["spec"]["containers"]
    return only


def env(service: str) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in container(service).get("env", [])}


def strict(schema: Any) -> Any:
    """The schema with `additionalProperties: false` wherever it lists properties and allows no others.

    The API server prunes unknown fields of a custom resource silently; a typo such as `maxReplicaCont`
    would be dropped, not refused. Validating strictly makes it an error here.
    """
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


@cache
def crd_validator(kind: str, api_version: str) -> jsonschema.protocols.Validator:
    [crd] = documents(KEDA_CRDS[kind])
    assert crd["spec"]["names"]["kind"] == kind
    group, version = api_version.split("/")
    assert crd["spec"]["group"] == group
    [served] = [v for v in crd["spec"]["versions"] if v["name"] == version and v["served"]]
    schema = strict(served["schema"]["openAPIV3Schema"])
    # apiVersion, kind and metadata are the API server's to check; the CRD types metadata loosely.
    return jsonschema.Draft7Validator(schema)


def validate(document: dict[str, Any]) -> None:
    """Raise if the resource does not match its schema (Kubernetes' own, or its CRD's)."""
    if document["kind"] in KEDA_CRDS:
        crd_validator(document["kind"], document["apiVersion"]).validate(document)
        return
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(document, version, strict=True)


def test_every_listed_resource_exists_parses_and_has_a_kind_and_a_name() -> None:
    listed = kustomization()["resources"]
    assert listed, "kustomization.yaml lists no resources"
    for name in listed:
        assert (K8S / name).is_file(), f"kustomization.yaml lists {name}, which does not exist"
        for document in documents(K8S / name):
            assert {"apiVersion", "kind", "metadata"} <= set(document), f"{name}: {document}"
            assert document["metadata"].get("name"), f"{name}: a {document['kind']} without a name"
    for generator in kustomization().get("configMapGenerator", []):
        for file in generator["files"]:
            assert (K8S / file).is_file(), f"the {generator['name']} generator names {file}, which is missing"


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(document, id=f"{document['kind']}/{document['metadata']['name']}")
        for document in resources()
    ],
)
def test_manifest_matches_its_schema(document: dict[str, Any]) -> None:
    validate(document)


def test_a_broken_deployment_is_rejected() -> None:
    broken = copy.deepcopy(resource("Deployment", "dealflow-qualification"))
    [probed] = broken["spec"]["template"]["spec"]["containers"]
    probed["readinessprobe"] = probed.pop("readinessProbe")  # misspelt: Kubernetes would ignore it
    with pytest.raises(kubernetes_validate.ValidationError, match="readinessprobe"):
        validate(broken)

    wrong_type = copy.deepcopy(resource("Deployment", "dealflow-qualification"))
    wrong_type["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(wrong_type)


def test_a_broken_scaled_object_is_rejected() -> None:
    misspelt = copy.deepcopy(resource("ScaledObject", "dealflow-qualification"))
    misspelt["spec"]["maxReplicaCont"] = misspelt["spec"].pop("maxReplicaCount")
    with pytest.raises(jsonschema.ValidationError, match="maxReplicaCont"):
        validate(misspelt)

    no_target = copy.deepcopy(resource("ScaledObject", "dealflow-qualification"))
    del no_target["spec"]["scaleTargetRef"]
    with pytest.raises(jsonschema.ValidationError, match="scaleTargetRef"):
        validate(no_target)

    unnamed_secret = copy.deepcopy(resource("TriggerAuthentication", "dealflow-kafka"))
    del unnamed_secret["spec"]["secretTargetRef"][0]["name"]
    with pytest.raises(jsonschema.ValidationError, match="name"):
        validate(unnamed_secret)


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_runs_its_module_with_probes_resources_and_no_privileges(service: str) -> None:
    deployment = resource("Deployment", f"dealflow-{service}")
    pod = deployment["spec"]["template"]
    main = container(service)
    assert main["command"] == ["python", "-m", f"services.{service}"]
    assert main["image"] == "dealflow"
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"

    [port] = main["ports"]
    assert (port["name"], port["containerPort"]) == ("http", deployed_settings().http_port)
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert main["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert pod["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port["containerPort"]),
        "prometheus.io/path": "/metrics",
    }

    assert set(main["resources"]["requests"]) == {"cpu", "memory"}
    assert "memory" in main["resources"]["limits"]

    dockerfile_user = re.search(r"^USER (\d+):(\d+)$", (REPO / "deploy" / "Dockerfile").read_text(), re.M)
    assert dockerfile_user is not None
    security = pod["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True
    assert (str(security["runAsUser"]), str(security["runAsGroup"])) == dockerfile_user.groups()
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert main["securityContext"]["capabilities"]["drop"] == ["ALL"]

    budget = resource("PodDisruptionBudget", f"dealflow-{service}")
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]


def known_environment_names() -> set[str]:
    """Every variable the code reads: the Settings fields, and each service's playbook location."""
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names.add(alias if isinstance(alias, str) else f"{Settings.model_config['env_prefix']}{name}".upper())
    source = (REPO / "shared" / "playbook.py").read_text()
    names |= set(re.findall(r"\"(DEALFLOW_[A-Z_]*PLAYBOOK)\"", source))
    return names


def test_every_variable_set_is_one_the_code_reads() -> None:
    known = known_environment_names()
    assert set(config()) - known == set()
    for service in SERVICES:
        assert set(env(service)) - known == set(), service


def test_the_config_map_is_a_valid_configuration() -> None:
    settings = deployed_settings()
    assert settings.http_host == "0.0.0.0"
    assert settings.partitions >= 6
    assert settings.kafka_security_protocol.startswith("SASL")


@pytest.mark.parametrize("service", SERVICES)
def test_secrets_come_from_the_secret_ops_create_and_none_is_in_the_repository(service: str) -> None:
    variables = env(service)
    for name in ("MONGODB_URI", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"):
        assert variables[name]["valueFrom"]["secretKeyRef"]["name"] == SECRET_NAME, name
        assert "value" not in variables[name]
    assert [r for r in resources() if r["kind"] == "Secret"] == []
    assert not {"MONGODB_URI", "KAFKA_SASL_PASSWORD"} & set(config())


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_reads_its_playbook_from_the_mounted_config_map(
    service: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    variable = ENVIRONMENT_VARIABLE
    pod = resource("Deployment", f"dealflow-{service}")["spec"]["template"]["spec"]
    mounted = Path(env(service)[variable]["value"])
    [mount] = [m for m in container(service)["volumeMounts"] if mounted.parent == Path(m["mountPath"])]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    [generator] = [
        g for g in kustomization()["configMapGenerator"] if g["name"] == volume["configMap"]["name"]
    ]
    [item] = [i for i in volume["configMap"]["items"] if i["path"] == mounted.name]
    [file] = [f for f in generator["files"] if Path(f).name == item["key"]]
    shipped = (K8S / file).read_text()

    assert shipped == DEFAULT_DOCUMENT.read_text(), (
        f"deploy/k8s/{file} differs from playbooks/default.yaml: copy it over"
    )
    # The service's own loader finds the document through the variable and accepts it.
    (tmp_path / mounted.name).write_text(shipped)
    monkeypatch.setenv(variable, str(tmp_path / mounted.name))
    config_module = importlib.import_module(f"services.{service}.config")
    assert config_module.load_playbook() == config_module.load_playbook(DEFAULT_DOCUMENT)


def test_every_service_has_its_manifest_listed_in_the_kustomization() -> None:
    assert {f"{service}.yaml" for service in SERVICES} <= set(kustomization()["resources"])
    deployments = {r["metadata"]["name"] for r in resources() if r["kind"] == "Deployment"}
    assert deployments == {f"dealflow-{service}" for service in SERVICES}


def test_only_insights_gets_the_api_token_and_from_the_secret() -> None:
    token = env("insights")["DEALFLOW_API_TOKEN"]
    assert token["valueFrom"]["secretKeyRef"] == {"name": SECRET_NAME, "key": "api-token"}
    assert "value" not in token
    assert not {"DEALFLOW_API_TOKEN", "DEALFLOW_API_TOKEN_FILE"} & set(config())
    for service in set(SERVICES) - {"insights"}:  # they serve no deal data: they need no token
        assert not {"DEALFLOW_API_TOKEN", "DEALFLOW_API_TOKEN_FILE"} & set(env(service)), service


def test_the_insights_api_answers_to_its_service_names_and_loopback_only() -> None:
    namespace = kustomization()["namespace"]
    allowed = set(deployed_settings().allowed_hosts)
    service = resource("Service", "dealflow-insights")["metadata"]["name"]
    cluster_names = {f"{service}.{namespace}.svc.cluster.local", f"{service}.{namespace}.svc", service}
    assert cluster_names <= allowed
    assert {"127.0.0.1", "localhost"} <= allowed  # kubectl port-forward
    assert "*" not in allowed


def network_policy(service: str) -> dict[str, Any]:
    return resource("NetworkPolicy", f"dealflow-{service}")


# Who may connect to a service's HTTP port: Prometheus scrapes every one; the ingress controller
# serves insights' page. Each is named by its namespace and its pods' labels.
PROMETHEUS = ("monitoring", "prometheus")
INGRESS_CONTROLLER = ("ingress-nginx", "ingress-nginx")


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_takes_connections_only_on_its_http_port_and_only_from_named_peers(
    service: str,
) -> None:
    policy = network_policy(service)["spec"]
    deployment = resource("Deployment", f"dealflow-{service}")["spec"]
    assert policy["podSelector"] == {"matchLabels": deployment["selector"]["matchLabels"]}
    assert policy["policyTypes"] == ["Ingress"]  # with no rule for a source, it is refused
    [port] = container(service)["ports"]
    peers = set()
    for rule in policy["ingress"]:
        # Only the port the container names `http` (health, metrics, the page): nothing else listens.
        assert rule["ports"] == [{"protocol": "TCP", "port": port["name"]}]
        assert rule.get("from"), "a rule without `from` admits every source"
        for peer in rule["from"]:
            assert set(peer) == {"namespaceSelector", "podSelector"}, (
                "an ipBlock or a lone selector is too wide"
            )
            pods = peer["podSelector"]["matchLabels"]
            assert pods, "an empty pod selector admits every pod of the namespace"
            namespace = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            peers.add((namespace, pods["app.kubernetes.io/name"]))
    assert peers == ({PROMETHEUS, INGRESS_CONTROLLER} if service == "insights" else {PROMETHEUS})
    annotations = resource("Deployment", f"dealflow-{service}")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port["containerPort"])  # the port Prometheus may reach


def test_every_pod_is_selected_by_a_network_policy_and_no_policy_opens_everything() -> None:
    policies = [r for r in resources() if r["kind"] == "NetworkPolicy"]
    assert {p["metadata"]["name"] for p in policies} == {f"dealflow-{service}" for service in SERVICES}
    for policy in policies:
        assert policy["spec"]["podSelector"].get("matchLabels"), "a policy for every pod of the namespace"
        assert all(rule.get("from") for rule in policy["spec"].get("ingress", []))


def test_a_broken_network_policy_is_rejected() -> None:
    misspelt = copy.deepcopy(network_policy("insights"))
    misspelt["spec"]["podselector"] = misspelt["spec"].pop("podSelector")
    with pytest.raises(kubernetes_validate.ValidationError, match="podselector"):
        validate(misspelt)

    wrong_type = copy.deepcopy(network_policy("insights"))
    wrong_type["spec"]["ingress"][0]["ports"][0]["protocol"] = ["TCP"]
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(wrong_type)


def test_the_insights_page_is_reachable_in_the_cluster_on_its_own_port() -> None:
    definition = importlib.import_module("services.insights.service").definition()
    page = resource("Service", "dealflow-insights")["spec"]
    deployment = resource("Deployment", "dealflow-insights")["spec"]

    assert page["type"] == "ClusterIP"
    assert page["selector"] == deployment["selector"]["matchLabels"]
    [port] = page["ports"]
    assert port["port"] == definition.http_port
    # By name, so the Service follows the container to whatever DEALFLOW_HTTP_PORT the ConfigMap sets.
    assert port["targetPort"] == "http"
    assert [p["name"] for p in container("insights")["ports"]] == ["http"]


def kafka_triggers(service: str) -> Iterator[dict[str, Any]]:
    for trigger in resource("ScaledObject", f"dealflow-{service}")["spec"]["triggers"]:
        assert trigger["type"] == "kafka"
        yield trigger


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_scales_on_its_own_consumer_group_and_input_topics(service: str) -> None:
    settings = deployed_settings()
    definition = importlib.import_module(f"services.{service}.service").definition()
    scaled = resource("ScaledObject", f"dealflow-{service}")["spec"]
    assert scaled["scaleTargetRef"]["name"] == f"dealflow-{service}"
    assert scaled["maxReplicaCount"] == settings.partitions, "replicas beyond the partitions sit idle"
    assert scaled["minReplicaCount"] >= 1, "a stage's deadlines fire only while one of its replicas runs"

    triggers = list(kafka_triggers(service))
    assert {t["metadata"]["topic"] for t in triggers} == {settings.topic(t) for t in definition.input_topics}
    auth = resource("TriggerAuthentication", "dealflow-kafka")
    for trigger in triggers:
        metadata = trigger["metadata"]
        assert set(metadata) <= KAFKA_TRIGGER_METADATA
        assert metadata["consumerGroup"] == settings.consumer_group(service)
        assert metadata["bootstrapServersFromEnv"] in config()
        assert metadata["offsetResetPolicy"] == "earliest", "the services start new groups at the earliest"
        assert int(metadata["lagThreshold"]) > 0
        assert metadata["sasl"] == KEDA_SASL[settings.kafka_sasl_mechanism]
        assert metadata["tls"] == (
            "enable" if settings.kafka_security_protocol.endswith("SSL") else "disable"
        )
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert {ref["name"] for ref in auth["spec"]["secretTargetRef"]} == {SECRET_NAME}
    assert {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]} == {"username", "password"}


def test_kustomize_renders_the_whole_deployment() -> None:
    """With kubectl at hand, render the kustomization and validate what a cluster would receive."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        # Without kubectl the rendering itself cannot be checked; test_every_listed_resource_exists...
        # and the schema tests cover every file it would read.
        assert kustomization()["resources"]
        return
    rendered = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    documents_out = [d for d in yaml.safe_load_all(rendered) if d]
    for document in documents_out:
        validate(document)
        assert document["metadata"]["labels"]["app.kubernetes.io/part-of"] == "dealflow"
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == "dealflow"
    [playbooks] = [
        d for d in documents_out if d["kind"] == "ConfigMap" and d["metadata"]["name"] != "dealflow-config"
    ]
    for deployment in (d for d in documents_out if d["kind"] == "Deployment"):
        [volume] = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if "configMap" in v]
        # kustomize renamed the generated ConfigMap (content hash) and every reference to it.
        assert volume["configMap"]["name"] == playbooks["metadata"]["name"]
        [image] = [i for i in kustomization()["images"] if i["name"] == "dealflow"]
        [main] = deployment["spec"]["template"]["spec"]["containers"]
        assert main["image"] == f"{image['newName']}:{image['newTag']}"
    assert {d["kind"] for d in documents_out} == {
        "Namespace",
        "ConfigMap",
        "Deployment",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "ScaledObject",
        "Service",
        "TriggerAuthentication",
    }
