"""Kubernetes manifests for serving one model version from its `deploy docker` image.

>>> manifests = k8s_manifests("churn@champion", "deploy/k8s", image="registry.example.com/churn:3")
>>> [d["kind"] for d in manifests.documents]
['ConfigMap', 'Deployment', 'Service', 'HorizontalPodAutoscaler']

One multi-document `manifests.yaml` that `kubectl apply -f` accepts:

- a **ConfigMap** holding the project's `[serving.NAME]` options as a `shipyard.toml`, mounted
  over the image's settings file, so options change without rebuilding the image;
- a **Deployment** running `shipyard serve NAME@VERSION` as the image's non-root user, with
  readiness (`/v2/health/ready`), liveness and startup (`/v2/health/live`) probes, CPU and memory
  requests (memory also as the limit; no CPU limit, which would throttle latency);
- a **Service** (ClusterIP) in front of it;
- a **HorizontalPodAutoscaler** (autoscaling/v2) on CPU utilisation.

The Deployment's selector holds only the stable `app.kubernetes.io/name` label, so a later
version applies over an earlier one as a rolling update.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.deploy.docker import (
    APP_HOME,
    APP_UID,
    DEFAULT_PORT,
    HEALTH_LIVE,
    HEALTH_READY,
    check_image,
    check_port,
    check_positive,
    default_tag,
    resource_name,
    serve_command,
)
from shipyard.deploy.folder import check_output_folder, staged_folder
from shipyard.errors import InvalidInput
from shipyard.project import Project, current

if TYPE_CHECKING:
    from shipyard.registry.versions import ModelVersion

MANIFESTS_FILE = "manifests.yaml"
_CPU = re.compile(r"^(?:[0-9]+m|[0-9]+(?:\.[0-9]{1,3})?)$")
_MEMORY = re.compile(r"^[0-9]+(?:\.[0-9]+)?(?:Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")


@dataclass(frozen=True)
class K8sOptions:
    """What `deploy k8s` can be told; checked as it is built."""

    image: str | None = None  # default: the tag `deploy docker --build` gives
    replicas: int = 2
    min_replicas: int | None = None  # default: replicas
    max_replicas: int | None = None  # default: 10, or replicas when more
    cpu: str = "500m"
    memory: str = "1Gi"
    cpu_utilization: int = 70  # the HPA's target, percent of the CPU request
    port: int = DEFAULT_PORT
    workers: int = 1

    def checked(self) -> K8sOptions:
        if self.image is not None:
            check_image(self.image, "--image")
        check_positive(self.replicas, "--replicas")
        if self.min_replicas is not None:
            check_positive(self.min_replicas, "--min-replicas")
        if self.max_replicas is not None:
            check_positive(self.max_replicas, "--max-replicas")
        low, high = self.min_replicas, self.max_replicas
        if low is not None and high is not None and low > high:
            raise InvalidInput(f"--min-replicas ({low}) must not exceed --max-replicas ({high})")
        if self.max_replicas is not None and self.replicas > self.max_replicas:
            raise InvalidInput(
                f"--replicas ({self.replicas}) must not exceed --max-replicas "
                f"({self.max_replicas}), the most pods the autoscaler keeps"
            )
        if self.min_replicas is not None and self.replicas < self.min_replicas:
            raise InvalidInput(
                f"--replicas ({self.replicas}) must be at least --min-replicas "
                f"({self.min_replicas}), the fewest pods the autoscaler keeps"
            )
        minimum = self.replicas if self.min_replicas is None else self.min_replicas
        maximum = max(10, self.replicas) if self.max_replicas is None else self.max_replicas
        if not isinstance(self.cpu, str) or not _CPU.match(self.cpu) or _zero(self.cpu):
            raise InvalidInput(
                f"--cpu {self.cpu!r} is not a CPU quantity: expected millicores like 500m or "
                "cores like 1 or 0.5"
            )
        memory = self.memory
        if not isinstance(memory, str) or not _MEMORY.match(memory) or _zero(memory):
            raise InvalidInput(
                f"--memory {memory!r} is not a memory quantity: expected e.g. 512Mi, 1Gi, 1G"
            )
        check_positive(self.cpu_utilization, "--cpu-utilization")
        if self.cpu_utilization > 100:
            raise InvalidInput(
                f"--cpu-utilization is a percentage of the CPU request between 1 and 100; got "
                f"{self.cpu_utilization}"
            )
        check_port(self.port)
        check_positive(self.workers, "--workers")
        return K8sOptions(
            image=self.image,
            replicas=self.replicas,
            min_replicas=minimum,
            max_replicas=maximum,
            cpu=self.cpu,
            memory=self.memory,
            cpu_utilization=self.cpu_utilization,
            port=self.port,
            workers=self.workers,
        )


def _zero(quantity: str) -> bool:
    digits = re.sub(r"[^0-9.]", "", quantity)
    return float(digits or 0) == 0


@dataclass(frozen=True)
class K8sManifests:
    """The documents, and the file they were written to (None when not written)."""

    version: str
    documents: list[dict[str, Any]]
    path: Path | None = None
    options: K8sOptions = field(default_factory=K8sOptions)

    def yaml(self) -> str:
        return to_yaml(self.documents)


def to_yaml(documents: list[dict[str, Any]]) -> str:
    """Multi-document YAML as people write it: no anchors, multi-line strings as `|` blocks."""
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump_all(documents, Dumper=Dumper, sort_keys=False, default_flow_style=False)


def k8s_manifests(
    ref: str,
    out: Path | str | None = None,
    *,
    image: str | None = None,
    replicas: int = 2,
    min_replicas: int | None = None,
    max_replicas: int | None = None,
    cpu: str = "500m",
    memory: str = "1Gi",
    cpu_utilization: int = 70,
    port: int = DEFAULT_PORT,
    workers: int = 1,
    project: Project | None = None,
) -> K8sManifests:
    """Manifests serving the version `ref` names; written to `out/manifests.yaml` when `out`
    is given (a new or empty folder, written whole or not at all)."""
    from shipyard.registry.versions import get

    options = K8sOptions(
        image=image,
        replicas=replicas,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        cpu=cpu,
        memory=memory,
        cpu_utilization=cpu_utilization,
        port=port,
        workers=workers,
    ).checked()
    out_path = None if out is None else check_output_folder(Path(out))
    project = project or current()
    version = get(ref, project=project)
    serving = dict(project.settings.serving.get(version.name, {}))
    documents = documents_for(version, serving, options)
    if out_path is None:
        return K8sManifests(version.ref, documents, None, options)
    with staged_folder(out_path) as stage:
        (stage / MANIFESTS_FILE).write_text(to_yaml(documents))
    return K8sManifests(version.ref, documents, out_path / MANIFESTS_FILE, options)


def settings_toml(name: str, serving: dict[str, Any]) -> str:
    import tomli_w

    header = (
        f"# shipyard settings for serving {name}: `[serving.{name}]` (see docs/serving.md).\n"
        "# Mounted over the image's settings file; SHIPYARD_* variables still win over it.\n"
    )
    body = tomli_w.dumps({"serving": {name: serving}}) if serving else ""
    return header + body


def documents_for(
    version: ModelVersion, serving: dict[str, Any], options: K8sOptions
) -> list[dict[str, Any]]:
    """ConfigMap, Deployment, Service and HPA for `version` (options already checked)."""
    name = resource_name(version.name)
    config_name = f"{name}-config"[:63]
    image = options.image or default_tag(version.name, version.version)
    toml_text = settings_toml(version.name, serving)
    stable = {"app.kubernetes.io/name": name}
    labels = {
        **stable,
        "app.kubernetes.io/version": str(version.version),
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/managed-by": "shipyard",
    }
    annotations = {
        "shipyard.ai/model": version.name,
        "shipyard.ai/version": str(version.version),
        "shipyard.ai/artifact": f"sha256:{version.artifact}",
    }
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": config_name, "labels": labels},
        "data": {"shipyard.toml": toml_text},
    }
    pod_annotations = {
        **annotations,
        # A changed ConfigMap changes the pod template, so applying it rolls the pods.
        "shipyard.ai/config-sha256": hashlib.sha256(toml_text.encode()).hexdigest(),
    }
    container = {
        "name": "server",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": serve_command(version.ref, options.port, options.workers),
        "ports": [{"name": "http", "containerPort": options.port, "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": options.cpu, "memory": options.memory},
            "limits": {"memory": options.memory},
        },
        "readinessProbe": _probe(HEALTH_READY, period=5, failures=3),
        "livenessProbe": _probe(HEALTH_LIVE, period=10, failures=3),
        # Loading and warming a model may take a while: up to 2 minutes before liveness counts.
        "startupProbe": _probe(HEALTH_LIVE, period=2, failures=60),
        "volumeMounts": [
            {
                "name": "settings",
                "mountPath": f"{APP_HOME}/shipyard.toml",
                "subPath": "shipyard.toml",
                "readOnly": True,
            }
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {
            "replicas": options.replicas,
            "selector": {"matchLabels": stable},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {"labels": labels, "annotations": pod_annotations},
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": APP_UID,
                        "runAsGroup": APP_UID,
                        "fsGroup": APP_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "terminationGracePeriodSeconds": 40,  # the server's 30 s graceful timeout
                    "containers": [container],
                    "volumes": [{"name": "settings", "configMap": {"name": config_name}}],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "type": "ClusterIP",
            "selector": stable,
            "ports": [
                {"name": "http", "port": options.port, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }
    autoscaler = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": options.min_replicas,
            "maxReplicas": options.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": options.cpu_utilization,
                        },
                    },
                }
            ],
        },
    }
    return [config_map, deployment, service, autoscaler]


def _probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }
