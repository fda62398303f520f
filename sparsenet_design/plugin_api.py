"""What a plugin may use: the one documented surface of the core for packages
that extend it (``adapters/adacof`` uses nothing else). Everything here keeps its
name across releases; the rest of the core may move.

- Extending the core: :class:`LayerKind`, :class:`OpKind`, :func:`register_kind`,
  :func:`unregister_kind`, :func:`registered`, :func:`passthrough_rule`, and the
  :class:`RuleContext` / :class:`TensorInfo` a channel rule talks to.
- Using it: :func:`reconstruct`, :func:`apply_spec`, :class:`DesignSpec`,
  :func:`prunable_layers`, :func:`load_model_file`, :func:`save_weights`,
  :func:`load_weights`, :func:`read_weights`.
- Errors, printed by the CLI as one paragraph: :class:`SdesignError` and its
  kinds.
"""
from __future__ import annotations

from .channels.context import RuleContext, TensorInfo
from .design.spec import DesignSpec
from .errors import CheckpointError, ModelFileError, SdesignError, SpecMismatchError, TraceError
from .kinds import LayerKind, OpKind, all_kinds, function_kind, layer_kind, register_kind, registered, unregister_kind
from .kinds.prunable import prunable_layers
from .kinds.rules import function_rule, passthrough_rule
from .modelfile import load_model_file
from .modelfile_options import parse_assignments
from .rebuild.build import apply_spec
from .rebuild.reconstruct import reconstruct
from .training.checkpoint import load_weights, read_weights, save_weights

__all__ = [
    "CheckpointError", "DesignSpec", "LayerKind", "ModelFileError", "OpKind", "RuleContext", "SdesignError",
    "SpecMismatchError", "TensorInfo", "TraceError", "all_kinds", "apply_spec", "function_kind", "function_rule",
    "layer_kind", "load_model_file", "load_weights", "parse_assignments", "passthrough_rule", "prunable_layers", "read_weights",
    "reconstruct", "register_kind", "registered", "save_weights", "unregister_kind",
]
