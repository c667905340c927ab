"""Map stores: probability maps cached once, read by every later command."""

from .base import InMemoryMapStore, MapRecord, MapStore

__all__ = ["InMemoryMapStore", "MapRecord", "MapStore"]
