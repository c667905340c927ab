"""Map stores: probability maps cached once, read by every later command."""

from .base import InMemoryMapStore, MapRecord, MapStore
from .importers import export_maps, import_maps, letterbox_inverse_matrix, read_map_file
from .store import CacheError, CacheWarning, MapCache, MapCacheWriter, fingerprint_of

__all__ = [
    "CacheError", "CacheWarning", "InMemoryMapStore", "MapCache", "MapCacheWriter", "MapRecord",
    "MapStore", "export_maps", "fingerprint_of", "import_maps", "letterbox_inverse_matrix",
    "read_map_file",
]
