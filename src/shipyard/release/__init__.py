"""Releasing model versions to traffic: sticky assignment of requests to arms, feature flags."""
