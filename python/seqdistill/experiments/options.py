"""The option names of an experiment config, in one place (read by the config classes and by the
validation, which must not import each other)."""

from __future__ import annotations

__all__ = ["CONTROLS", "GRID_KEYS", "SOURCES"]

#: Distillation settings a grid may vary.
GRID_KEYS = ("alpha", "dynamic_beta", "block", "pooling", "gamma", "epochs", "loss")
#: Control variants: profiles shuffled across users, statistics profiles instead of LLM ones.
CONTROLS = ("shuffled", "stats")
#: Where the profile targets come from.
SOURCES = ("stats", "llm", "targets")
