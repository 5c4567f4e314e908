"""feeds: publish per-topic RSS 2.0 and Atom 1.0 feeds from stored articles."""

from .app import create_app

__all__ = ["create_app"]
