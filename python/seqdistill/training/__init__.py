"""Training loop, its configuration and the extra-loss extension point."""

from .config import TrainConfig
from .trainer import LossTerm, Trainer, item_counts, resolve_device, seed_everything

__all__ = ["TrainConfig", "Trainer", "LossTerm", "seed_everything", "resolve_device", "item_counts"]
