"""`deploy k8s`: ConfigMap, Deployment, Service and autoscaling/v2 HPA, each validated offline
against the Kubernetes 1.29 schema (strict: unknown fields fail), with what was asked in them."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import tomli_w
import yaml
from deploy_helpers import Registered, error_line, run_shipyard, tree

from shipyard.deploy.k8s import K8sManifests, k8s_manifests
from shipyard.errors import InvalidInput, NotFound
from shipyard.project import Project

KUBERNETES = "1.29.0"


def validate(documents: list[dict[str, Any]]) -> None:
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES, strict=True)


def by_kind(manifests: K8sManifests) -> dict[str, dict[str, Any]]:
    return {str(d["kind"]): d for d in manifests.documents}


def test_the_manifests_are_valid_and_carry_what_was_asked(
    registered: Registered, tmp_path: Path
) -> None:
    manifests = k8s_manifests(
        "churn@champion",
        tmp_path / "k8s",
        image="registry.example.com/ml/churn:2",
        replicas=3,
        min_replicas=2,
        max_replicas=7,
        cpu="750m",
        memory="768Mi",
        cpu_utilization=60,
        port=9000,
        workers=2,
        project=registered.project,
    )
    assert manifests.path == (tmp_path / "k8s" / "manifests.yaml").absolute()
    assert tree(tmp_path / "k8s") == {"manifests.yaml"}
    written = list(yaml.safe_load_all(manifests.path.read_text()))
    assert written == manifests.documents
    assert [d["kind"] for d in written] == [
        "ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler",
    ]  # fmt: skip
    validate(written)

    kinds = by_kind(manifests)
    deployment = kinds["Deployment"]
    assert deployment["metadata"]["name"] == "shipyard-churn"
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["image"] == "registry.example.com/ml/churn:2"
    assert container["command"] == [
        "shipyard", "serve", "churn@2", "--host", "0.0.0.0", "--port", "9000", "--workers", "2",
    ]  # fmt: skip
    assert container["ports"] == [{"name": "http", "containerPort": 9000, "protocol": "TCP"}]
    assert container["resources"] == {
        "requests": {"cpu": "750m", "memory": "768Mi"},
        "limits": {"memory": "768Mi"},
    }
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/live"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/version"] == "2"
    assert deployment["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "shipyard-churn"
    }

    service = kinds["Service"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 9000, "targetPort": "http", "protocol": "TCP"}
    ]
    autoscaler = kinds["HorizontalPodAutoscaler"]
    assert autoscaler["apiVersion"] == "autoscaling/v2"
    assert autoscaler["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "shipyard-churn",
    }  # fmt: skip
    assert (autoscaler["spec"]["minReplicas"], autoscaler["spec"]["maxReplicas"]) == (2, 7)
    (metric,) = autoscaler["spec"]["metrics"]
    assert metric["resource"] == {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60},
    }  # fmt: skip

    config_map = kinds["ConfigMap"]
    (volume,) = pod["volumes"]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    (mount,) = container["volumeMounts"]
    assert mount["mountPath"] == "/srv/shipyard/.shipyard/shipyard.toml"
    assert mount["subPath"] in config_map["data"]


def test_defaults_fit_the_image_deploy_docker_builds(registered: Registered) -> None:
    manifests = k8s_manifests("churn@1", project=registered.project)
    assert manifests.path is None
    validate(manifests.documents)
    kinds = by_kind(manifests)
    (container,) = kinds["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "shipyard-churn:1"  # the tag `deploy docker --build` gives
    assert container["ports"][0]["containerPort"] == 8080
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}
    assert kinds["Deployment"]["spec"]["replicas"] == 2
    spec = kinds["HorizontalPodAutoscaler"]["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 10)


def test_the_config_map_carries_the_projects_serving_options(
    registered: Registered, tmp_path: Path
) -> None:
    options = {"max_batch_size": 16, "max_batch_wait_ms": 2.5, "cache_size": 1000}
    settings = registered.project.settings.settings_file
    settings.write_text(settings.read_text() + tomli_w.dumps({"serving": {"churn": options}}))
    project = Project.open(registered.project.home)
    try:
        first = k8s_manifests("churn@champion", project=project)
    finally:
        project.close()
    text = by_kind(first)["ConfigMap"]["data"]["shipyard.toml"]
    assert tomllib.loads(text) == {"serving": {"churn": options}}

    # A change of options changes the pod template, so applying it rolls the pods.
    plain = k8s_manifests("churn@champion", project=registered.project)

    def checksum(m: K8sManifests) -> str:
        template = by_kind(m)["Deployment"]["spec"]["template"]
        return str(template["metadata"]["annotations"]["shipyard.ai/config-sha256"])

    assert checksum(first) != checksum(plain)


def test_strict_validation_catches_a_wrong_field(registered: Registered) -> None:
    documents = k8s_manifests("churn@1", project=registered.project).documents
    service = next(d for d in documents if d["kind"] == "Service")
    service["spec"]["portz"] = service["spec"].pop("ports")
    with pytest.raises(kubernetes_validate.ValidationError, match="portz"):
        validate([service])


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"replicas": 0}, "--replicas must be an integer >= 1; got 0"),
        ({"min_replicas": 5, "max_replicas": 3}, r"--min-replicas \(5\) must not exceed"),
        ({"replicas": 12, "max_replicas": 8}, r"--replicas \(12\) must not exceed --max-rep"),
        ({"replicas": 1, "min_replicas": 2}, r"--replicas \(1\) must be at least --min-rep"),
        ({"min_replicas": 0}, "--min-replicas must be an integer >= 1; got 0"),
        ({"cpu": "lots"}, "--cpu 'lots' is not a CPU quantity: expected millicores like 500m"),
        ({"cpu": "0m"}, "--cpu '0m' is not a CPU quantity"),
        ({"memory": "1GB"}, "--memory '1GB' is not a memory quantity: expected e.g. 512Mi"),
        ({"cpu_utilization": 0}, "--cpu-utilization must be an integer >= 1"),
        ({"cpu_utilization": 150}, "--cpu-utilization is a percentage .* got 150"),
        ({"port": 65536}, "--port must be an integer between 1 and 65535"),
        ({"workers": 0}, "--workers must be an integer >= 1"),
        ({"image": "Registry/Churn"}, "--image 'Registry/Churn' is not an image reference"),
    ],
)
def test_bad_options_are_refused_naming_what_was_expected(
    registered: Registered, tmp_path: Path, options: dict[str, Any], error: str
) -> None:
    with pytest.raises(InvalidInput, match=error):
        k8s_manifests("churn@1", tmp_path / "k8s", project=registered.project, **options)
    assert not (tmp_path / "k8s").exists()


def test_unknown_models_and_taken_folders_are_refused(
    registered: Registered, tmp_path: Path
) -> None:
    with pytest.raises(NotFound, match=r"no registered model 'nope' \(models: churn\)"):
        k8s_manifests("nope@champion", tmp_path / "k8s", project=registered.project)
    with pytest.raises(NotFound, match=r"no alias 'prod' \(aliases: candidate, champion\)"):
        k8s_manifests("churn@prod", tmp_path / "k8s", project=registered.project)
    assert not (tmp_path / "k8s").exists()
    (tmp_path / "k8s").mkdir()
    (tmp_path / "k8s" / "mine.yaml").write_text("keep")
    with pytest.raises(InvalidInput, match="is not empty"):
        k8s_manifests("churn@1", tmp_path / "k8s", project=registered.project)
    assert tree(tmp_path / "k8s") == {"mine.yaml"}
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_the_command_writes_valid_manifests(registered: Registered, tmp_path: Path) -> None:
    result = run_shipyard(
        "deploy", "k8s", "churn@champion", "--out", "k8s", "--image", "churn:2",
        "--replicas", "2", "--cpu", "1", "--memory", "2Gi", "--min-replicas", "1",
        "--max-replicas", "4", "--port", "8081", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.output
    assert "for churn@2: ConfigMap, Deployment, Service, HorizontalPodAutoscaler" in result.stdout
    documents = list(yaml.safe_load_all((tmp_path / "k8s" / "manifests.yaml").read_text()))
    validate(documents)
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["requests"] == {"cpu": "1", "memory": "2Gi"}
    assert container["ports"][0]["containerPort"] == 8081

    bad = run_shipyard("deploy", "k8s", "churn@1", "--out", "k8s2", "--cpu", "x", cwd=tmp_path)
    assert "--cpu 'x' is not a CPU quantity" in error_line(bad)
    assert not (tmp_path / "k8s2").exists()
