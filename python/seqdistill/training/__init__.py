"""Training loop, its configuration, the loss-term protocol and the checkpoint format."""

from .config import TrainConfig
from .terms import BatchOutput, LossTerm
from .trainer import Trainer, item_counts, resolve_device, seed_everything

__all__ = ["BatchOutput", "LossTerm", "TrainConfig", "Trainer", "item_counts", "resolve_device", "seed_everything"]
