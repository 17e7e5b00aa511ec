"""Inference methods and their registry.

A method is a function

    solve(model, images, observed, target, num_samples=None, **options) -> QueryResult

where ``images`` is ``B x C x H x W`` (long, zero outside ``observed``),
``observed`` and ``target`` are disjoint ``C x H x W`` boolean masks. Each
method declares the model kinds it supports and, through ``applies``, the
query shapes; :func:`pixelprob.query` uses that to refuse clearly and to
choose for ``method="auto"``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

METHODS = {}

# Modules that register methods when imported; missing optional ones are skipped.
_MODULES = ["exact", "enumerate", "ancestral", "importance", "rejection", "gibbs", "vae_methods", "svi"]


@dataclass
class Method:
    name: str
    solve: Callable
    kinds: Tuple[str, ...]
    exact: bool
    applies: Optional[Callable] = None  # (model, observed, target) -> None or reason it does not apply
    doc: str = ""

    def why_not(self, model, observed, target):
        if model.kind not in self.kinds:
            return f"method {self.name!r} does not support {model.kind} models"
        if self.applies is not None:
            return self.applies(model, observed, target)
        return None


def register(name, kinds, exact=False, applies=None):
    def deco(fn):
        METHODS[name] = Method(name, fn, tuple(kinds), exact, applies, (fn.__doc__ or "").strip().split("\n")[0])
        return fn
    return deco


def load_methods():
    for mod in _MODULES:
        try:
            importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{mod}":
                raise
    return METHODS


def available(model, observed=None, target=None):
    """Names of the methods that can answer this query on this model."""
    load_methods()
    out = []
    for name, m in METHODS.items():
        if model.kind not in m.kinds:
            continue
        if observed is not None and m.why_not(model, observed, target) is not None:
            continue
        out.append(name)
    return sorted(out)
