"""Storage: the metadata database and the content-addressed artifact store."""

from shipyard.store.artifacts import ArtifactStore, Blob, Staged, sha256_file
from shipyard.store.metadata import MetadataStore

__all__ = ["ArtifactStore", "Blob", "MetadataStore", "Staged", "sha256_file"]
