"""Naming the keys a config section accepts, for "unknown key" errors that say what was meant.

Pydantic reports a misspelt key as ``Extra inputs are not permitted``; this finds the model
of the section the key sits in (following nested models, lists of them and optional ones)
and suggests the closest accepted keys (:func:`difflib.get_close_matches`).
"""

from __future__ import annotations

import difflib
import typing

from pydantic import BaseModel


def _model_in(annotation: object) -> type[BaseModel] | None:
    """The pydantic model inside a field annotation (``X``, ``X | None``, ``list[X]``,
    ``dict[str, X]``, ``Annotated[X, ...]``), or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def section_model(root: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The model of the section at ``loc`` (keys and list indices, as in pydantic error
    locations) under ``root``, or None when the path leaves the models."""
    model = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        inner = _model_in(field.annotation)
        if inner is None:
            return None
        model = inner
    return model


def unknown_key_message(root: type[BaseModel], loc: tuple) -> str:
    """``unknown key 'backnd' (did you mean 'backend'?)`` for the key at the end of ``loc``;
    the section's accepted keys are listed when none is close."""
    key = str(loc[-1]) if loc else ""
    model = section_model(root, tuple(loc[:-1]))
    if model is None:
        return f"unknown key '{key}'"
    accepted = sorted(model.model_fields)
    close = difflib.get_close_matches(key, accepted, n=3, cutoff=0.6)
    if close:
        return f"unknown key '{key}' (did you mean {' or '.join(repr(c) for c in close)}?)"
    return f"unknown key '{key}' (accepted here: {', '.join(accepted)})"
