"""The runyard tracking server: an HTTP face over a Store and an ArtifactStore.

    >>> from runyard.server import create_app        # doctest: +SKIP
    >>> app = create_app(store, artifacts, ServerSettings())  # doctest: +SKIP

Needs the ``server`` extra (``pip install 'runyard[server]'``).
"""

from .app import ServerSettings, create_app

__all__ = ["ServerSettings", "create_app"]
