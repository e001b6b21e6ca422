"""The model registry: kind names (and their aliases) to model classes.

``ModelConfig.kind`` names an entry here; :func:`~seqdistill.models.build_model` and
:func:`~seqdistill.models.load_model` find the class through :func:`model_class`. Each entry is
stored as ``module:Class`` and imported when first asked for, so this module imports no model
and ``base.py`` never imports its own subclasses (no import circle). A new model registers
itself with :func:`register_model` (a class or a ``"module:Class"`` path) and needs no change
anywhere else.
"""

from __future__ import annotations

import importlib

from seqdistill.errors import ConfigError

__all__ = ["canonical_kind", "model_class", "model_kinds", "register_model"]

# kind -> class, or "module:Class" until first use
_MODELS: dict[str, type | str] = {  # values: SequentialRecommender subclasses
    "sasrec": "seqdistill.models.sasrec:SASRec",
    "bert4rec": "seqdistill.models.bert4rec:BERT4Rec",
}
# other spellings accepted in configs; ModelConfig stores the canonical kind
_ALIASES: dict[str, str] = {"sas_rec": "sasrec", "bert": "bert4rec", "bert_4_rec": "bert4rec"}


def register_model(kind: str, cls: type | str, aliases: tuple[str, ...] = ()) -> None:
    """Make ``ModelConfig(kind=kind)`` build ``cls`` (a class or ``"module:Class"``).

    Names are case-insensitive; re-registering a kind replaces it, an alias may not shadow a kind.
    """
    key = kind.lower()
    if key in _ALIASES:
        raise ConfigError(f"register_model: {kind!r} is already an alias of {_ALIASES[key]!r}")
    _MODELS[key] = cls
    for a in aliases:
        if a.lower() in _MODELS:
            raise ConfigError(f"register_model: alias {a!r} is already a model kind")
        _ALIASES[a.lower()] = key


def model_kinds() -> list[str]:
    """The registered kind names (aliases not included), sorted."""
    return sorted(_MODELS)


def canonical_kind(kind: object) -> str:
    """The registered kind that ``kind`` (a kind or an alias, any case) names.

    Raises :class:`~seqdistill.errors.ConfigError` naming the value and the known kinds.
    """
    if isinstance(kind, str):
        key = kind.lower()
        key = _ALIASES.get(key, key)
        if key in _MODELS:
            return key
    raise ConfigError(f"ModelConfig.kind: unknown model kind {kind!r}; known kinds are {model_kinds()}")


def model_class(kind: str) -> type:
    """The class registered under ``kind`` (or an alias), imported on first use."""
    key = canonical_kind(kind)
    entry = _MODELS[key]
    if isinstance(entry, str):
        module, _, name = entry.partition(":")
        entry = getattr(importlib.import_module(module), name)
        _MODELS[key] = entry
    return entry
