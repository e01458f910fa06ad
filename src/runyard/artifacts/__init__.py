"""Artifact stores: where the bytes of run files and snapshots are kept."""

from .base import ArtifactStore
from .local import LocalArtifactStore

__all__ = ["ArtifactStore", "LocalArtifactStore"]
