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
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

METHODS = {}

# Modules that register methods when imported; missing optional ones are skipped.
_MODULES = ["exact", "enumerate", "ancestral", "importance", "rejection", "gibbs", "vae_methods", "svi"]


@dataclass
class Impl:
    solve: Callable
    exact: bool
    applies: Optional[Callable] = None  # (model, observed, target) -> None, or why it does not apply


@dataclass
class Method:
    """A method name and its implementation for each model kind."""

    name: str
    impls: Dict[str, Impl] = field(default_factory=dict)
    doc: str = ""

    @property
    def kinds(self):
        return tuple(self.impls)

    def why_not(self, model, observed, target):
        if model.kind not in self.impls:
            return f"method {self.name!r} does not support {model.kind} models (it supports: {', '.join(self.impls)})"
        impl = self.impls[model.kind]
        if impl.applies is not None:
            why = impl.applies(model, observed, target)
            if why:
                return f"method {self.name!r} does not apply: {why}"
        return None

    def solve(self, model, *args, **kw):
        return self.impls[model.kind].solve(model, *args, **kw)

    def exact(self, model):
        return self.impls[model.kind].exact


def register(name, kinds, exact=False, applies=None):
    """Register ``fn`` as method ``name`` for each model kind in ``kinds``."""
    def deco(fn):
        m = METHODS.setdefault(name, Method(name))
        m.doc = m.doc or (fn.__doc__ or "").strip().split("\n")[0]
        for k in kinds:
            m.impls[k] = Impl(fn, exact, applies)
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
        if model.kind not in m.impls:
            continue
        if observed is not None and m.why_not(model, observed, target) is not None:
            continue
        out.append(name)
    return sorted(out)
