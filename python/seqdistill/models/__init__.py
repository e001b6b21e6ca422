"""Sequential recommenders (SASRec, BERT4Rec), their losses and pooling helpers."""

from .base import ModelConfig, ModelOutput, SequentialRecommender, build_model, load_model
from .bert4rec import BERT4Rec
from .losses import chunked_ce, full_ce, sampled_softmax_ce
from .pooling import exp_recency, masked_mean, pool
from .registry import model_class, model_kinds, register_model
from .sasrec import SASRec

__all__ = [
    "ModelConfig",
    "ModelOutput",
    "model_class",
    "model_kinds",
    "register_model",
    "SequentialRecommender",
    "SASRec",
    "BERT4Rec",
    "build_model",
    "load_model",
    "full_ce",
    "chunked_ce",
    "sampled_softmax_ce",
    "masked_mean",
    "exp_recency",
    "pool",
]
