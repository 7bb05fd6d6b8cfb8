"""tinycls: make image classifiers tiny (MACs) while keeping macro F1, as a DVC pipeline."""

__version__ = "0.1.0"
