"""mal: speech enhancement with Model-as-Loss training."""

__version__ = "0.1.0"
