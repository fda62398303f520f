"""A deep copy of a module tree that costs a fraction of ``copy.deepcopy``.

``copy.deepcopy`` of a model spends most of its time in the generic
pickle-protocol machinery for every module and its dozen (mostly empty) hook
dictionaries. Modules that keep nn.Module's own copy semantics are copied here
directly: tensors through ``copy.deepcopy`` with the shared memo (so tied
weights stay tied), immutable attributes shared, empty containers made anew,
anything else deep-copied. Modules with their own ``__deepcopy__``,
``__reduce_ex__``, ``__getstate__`` or ``__setstate__`` (e.g. RNNs) go through
``copy.deepcopy`` itself. The result equals ``copy.deepcopy(module, memo)``.
"""
from __future__ import annotations

import copy
from collections import OrderedDict

import torch
from torch import nn

_EMPTY_OK = (dict, OrderedDict, set, list)
_ATOMS = (int, float, bool, str, bytes, type(None), complex, torch.dtype, torch.device)
_ATOM_TYPES = frozenset(_ATOMS)


def _plain_copy_semantics(cls: type) -> bool:
    return (
        getattr(cls, "__deepcopy__", None) is None
        and cls.__reduce_ex__ is object.__reduce_ex__
        and cls.__reduce__ is object.__reduce__
        and cls.__getstate__ is nn.Module.__getstate__
        and cls.__setstate__ is nn.Module.__setstate__
    )


_PLAIN: dict[type, bool] = {}


def _is_atom(value) -> bool:
    if isinstance(value, _ATOMS):
        return True
    return type(value) is tuple and all(isinstance(v, _ATOMS) for v in value)


def copy_module(module: nn.Module, memo: dict[int, object] | None = None) -> nn.Module:
    """``copy.deepcopy(module, memo)``, faster. Objects already in ``memo`` (by id)
    are used as they are: that is how callers swap parts of the tree."""
    memo = {} if memo is None else memo
    return _copy(module, memo)


def _copy(module: nn.Module, memo: dict[int, object]) -> nn.Module:
    done = memo.get(id(module))
    if done is not None:
        return done
    cls = type(module)
    plain = _PLAIN.get(cls)
    if plain is None:
        plain = _PLAIN[cls] = _plain_copy_semantics(cls)
    if not plain:
        return copy.deepcopy(module, memo)
    new = cls.__new__(cls)
    memo[id(module)] = new
    state = {}
    for key, value in module.__dict__.items():
        kind = type(value)
        if kind in _ATOM_TYPES:  # the common cases first: flags, sizes, empty hook dicts
            state[key] = value
        elif kind in _EMPTY_OK and not value:
            state[key] = kind()
        elif key == "_modules":
            children = kind()
            for name, child in value.items():
                children[name] = None if child is None else _copy(child, memo)
            state[key] = children
        elif key in ("_parameters", "_buffers"):
            tensors = kind()
            for name, t in value.items():
                tensors[name] = None if t is None else copy.deepcopy(t, memo)
            state[key] = tensors
        elif _is_atom(value):
            state[key] = value
        else:
            state[key] = copy.deepcopy(value, memo)
    new.__dict__.update(state)
    return new
