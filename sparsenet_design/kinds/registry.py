"""The table of layer and op kinds: register, remove, list, look up.

Kinds registered later take precedence over earlier ones for the same target, so
a plugin or a test can override a built-in kind and, by removing its own, bring
the built-in back. The built-in kinds are registered the first time the table
is used.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from torch import nn

from .base import LayerKind, OpKind, Kind, dotted_name

_MISSING = object()


def op_key(target: Any) -> Any:
    """Normalise the many faces of one torch op to one dictionary key."""
    op = getattr(target, "_opoverload", None)  # torch.library.custom_op objects
    if op is not None:
        target = op
    packet = getattr(target, "overloadpacket", None)  # OpOverload -> its packet
    if packet is not None:
        return packet
    return target


def _own_forward_below(cls: type, owner: type) -> bool:
    """Whether ``cls`` or a class between it and ``owner`` in its MRO defines ``forward``."""
    for klass in cls.__mro__:
        if klass is owner:
            return False
        if "forward" in vars(klass):
            return True
    return False


class KindTable:
    def __init__(self) -> None:
        self._kinds: list[Kind] = []
        self._lock = threading.RLock()
        self._builtins = "no"  # "no" -> "loading" -> "yes"
        self._clear_caches()

    # -- changing the table ---------------------------------------------------

    def register(self, kind: Kind) -> Kind:
        if not isinstance(kind, (LayerKind, OpKind)):
            raise TypeError(f"register_kind expects a LayerKind or an OpKind, got {type(kind).__name__}")
        self._ensure_builtins()
        with self._lock:
            if kind not in self._kinds:
                self._kinds.append(kind)
            self._clear_caches()
        return kind

    def unregister(self, kind: Kind) -> None:
        with self._lock:
            self._kinds = [k for k in self._kinds if k is not kind]
            self._clear_caches()

    def kinds(self) -> list[Kind]:
        self._ensure_builtins()
        return list(self._kinds)

    # -- looking up ------------------------------------------------------------

    def for_class(self, cls: type, call: bool = True) -> LayerKind | None:
        """The layer kind of modules of class ``cls``. ``call=True``: the kind that
        describes a *call* (``None`` when ``cls`` has its own ``forward``, so that it is
        traced through); ``call=False``: the kind that describes its tensors."""
        cache = self._call_cache if call else self._tensor_cache
        found = cache.get(cls, _MISSING)
        if found is _MISSING:
            found = cache[cls] = self._find_class(cls, call)
        return found

    def for_function(self, target: Any) -> OpKind | None:
        functions, _ = self._op_tables()
        try:
            kind = functions.get(op_key(target))
        except TypeError:  # unhashable target
            return None
        return kind if kind is not None else functions.get(dotted_name(target))

    def for_method(self, name: str) -> OpKind | None:
        return self._op_tables()[1].get(name)

    # -- internals ------------------------------------------------------------------

    def _clear_caches(self) -> None:
        self._call_cache: dict[type, LayerKind | None] = {}
        self._tensor_cache: dict[type, LayerKind | None] = {}
        self._ops: tuple[dict, dict] | None = None
        self._claims: dict[Any, LayerKind] | None = None

    def _class_claims(self) -> dict[Any, LayerKind]:
        claims = self._claims
        if claims is None:
            self._ensure_builtins()
            claims = {}
            for kind in self._kinds:  # later registrations win
                if isinstance(kind, LayerKind):
                    for cls in kind.classes:
                        claims[cls] = kind
            self._claims = claims
        return claims

    def _find_class(self, cls: type, call: bool) -> LayerKind | None:
        claims = self._class_claims()
        for klass in cls.__mro__:
            if klass is nn.Module or klass is object:
                return None
            kind = claims.get(klass) or claims.get(dotted_name(klass))
            if kind is not None:
                if call and _own_forward_below(cls, klass):
                    return None
                return kind
        return None

    def _op_tables(self) -> tuple[dict, dict]:
        tables = self._ops
        if tables is None:
            self._ensure_builtins()
            functions: dict[Any, OpKind] = {}
            methods: dict[str, OpKind] = {}
            for kind in self._kinds:
                if isinstance(kind, OpKind):
                    for fn in kind.functions:
                        functions[fn if isinstance(fn, str) else op_key(fn)] = kind
                    for name in kind.methods:
                        methods[name] = kind
            tables = self._ops = (functions, methods)
        return tables

    def _ensure_builtins(self) -> None:
        if self._builtins != "no":
            return
        with self._lock:
            if self._builtins != "no":
                return
            self._builtins = "loading"
            try:
                from . import builtin  # noqa: F401  (registers the built-in kinds)
            except BaseException:
                self._builtins = "no"
                raise
            self._builtins = "yes"
            self._clear_caches()


KINDS = KindTable()


def register_kind(kind: Kind) -> Kind:
    """Add a :class:`LayerKind` or :class:`OpKind` to the table (usable on an instance
    at module level; returns it). It takes precedence over kinds registered before
    it for the same classes, functions or methods."""
    return KINDS.register(kind)


def unregister_kind(kind: Kind) -> None:
    """Remove ``kind``; whatever it overrode applies again."""
    KINDS.unregister(kind)


@contextlib.contextmanager
def registered(*kinds: Kind) -> Iterator[tuple[Kind, ...]]:
    """Register ``kinds`` for the duration of a ``with`` block (tests, experiments)."""
    for kind in kinds:
        KINDS.register(kind)
    try:
        yield kinds
    finally:
        for kind in kinds:
            KINDS.unregister(kind)


def all_kinds() -> list[Kind]:
    """Every registered kind, built-in ones first."""
    return KINDS.kinds()


def layer_kind(module: nn.Module | type, call: bool = True) -> LayerKind | None:
    """The kind of a module (or class); see :meth:`KindTable.for_class`."""
    cls = module if isinstance(module, type) else type(module)
    return KINDS.for_class(cls, call)


def is_leaf_module(module: nn.Module) -> bool | None:
    """Whether calls of ``module`` are traced as one op: ``True``/``False`` as its
    layer kind says, ``None`` when it has no kind (the tracer's own default decides)."""
    kind = layer_kind(module)
    return None if kind is None else kind.leaf


def function_kind(target: Any) -> OpKind | None:
    return KINDS.for_function(target)


def method_kind(name: str) -> OpKind | None:
    return KINDS.for_method(name)
