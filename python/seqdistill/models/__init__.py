"""Sequential recommenders (SASRec, BERT4Rec), their losses and pooling helpers."""

from .base import ModelConfig, ModelOutput, SequentialRecommender, build_model, load_model
from .bert4rec import BERT4Rec
from .losses import chunked_ce, full_ce, sampled_softmax_ce
from .pooling import exp_recency, masked_mean, pool
from .registry import model_class, model_kinds, register_model
from .sasrec import SASRec

__all__ = [
    "BERT4Rec",
    "ModelConfig",
    "ModelOutput",
    "SASRec",
    "SequentialRecommender",
    "build_model",
    "chunked_ce",
    "exp_recency",
    "full_ce",
    "load_model",
    "masked_mean",
    "model_class",
    "model_kinds",
    "pool",
    "register_model",
    "sampled_softmax_ce",
]
