"""hpstudy: a reproducible hyperparameter study of MobileNet on CIFAR-100."""
from .config import Config, ConfigError
from .data import DataError
from .store import Run, StoreError, StoreUnavailable, list_runs, run

__all__ = ["Config", "ConfigError", "DataError", "Run", "StoreError", "StoreUnavailable",
           "list_runs", "run"]
__version__ = "0.1.0"
