"""unclip_tuner: tune DBNet post-processing against the competition metric from cached maps.

The pipeline reads left to right, and so do the sub-packages:
``io`` -> ``models`` + ``cache`` -> ``postprocess`` -> ``metrics`` -> ``search`` -> ``report``.
"""

__version__ = "0.1.0"
