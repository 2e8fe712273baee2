"""Catalogue readers and writers. Every reader returns a :class:`Catalog`."""

from .catalog import Catalog

__all__ = ["Catalog"]
