"""Deployment targets: the local multi-process server, container build contexts, Kubernetes
manifests.

>>> shipyard.deploy.docker_context("churn@champion", "build/churn")      # see docs/deploy.md
>>> shipyard.deploy.build_image("build/churn")
>>> shipyard.deploy.k8s_manifests("churn@champion", "deploy/churn", image="registry/churn:3")

Names resolve on first use, so importing this package imports neither uvicorn nor PyYAML.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shipyard.deploy.docker import BuildFailed, DockerContext, build_image, docker_context
    from shipyard.deploy.k8s import K8sManifests, k8s_manifests

_EXPORTS = {
    "BuildFailed": "shipyard.deploy.docker",
    "DockerContext": "shipyard.deploy.docker",
    "build_image": "shipyard.deploy.docker",
    "docker_context": "shipyard.deploy.docker",
    "K8sManifests": "shipyard.deploy.k8s",
    "k8s_manifests": "shipyard.deploy.k8s",
}
__all__ = [
    "BuildFailed",
    "DockerContext",
    "K8sManifests",
    "build_image",
    "docker_context",
    "k8s_manifests",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'shipyard.deploy' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
