"""Deployment targets: the local multi-process server, container build contexts, Kubernetes
manifests."""
