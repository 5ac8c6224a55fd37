"""Stable content fingerprints of models, data and arguments (hex digests, same on every run).

`model_identity` is the one identity every cache compares (the session's clean logits and
sanity flags, and --robust-cache's stored results): a model is the same only when all of
this is unchanged (docs/scaling.md):

- the module tree: every submodule's name, order and class;
- every class's code: for each class in the MRO that is not torch's own, the bytecode,
  constants, names, defaults and closures of its methods and the values of its plain class
  attributes, plus the globals that code names (module constants, helper functions);
  torch's own classes are named and pinned by torch's version;
- every parameter and buffer (name, shape, dtype, values);
- every other attribute in each module's __dict__, by content (numbers, strings, tensors,
  containers, functions, plain objects);
- every forward/backward hook and pre-hook, on a module or global (its code and closure).

What cannot be established (an object without a Python __dict__, say a torch.Generator,
or a structure too large to walk) makes the identity None: nothing is reused for it.
The training flag is not part of it: every evaluation runs the model in eval mode.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import logging
import types
import weakref
from collections import defaultdict
from typing import Any

import torch

from pytest_robust.engine.digests import Unidentifiable
from pytest_robust.engine.digests import code_digest
from pytest_robust.engine.digests import tensor_bytes
from pytest_robust.engine.tensor_memo import Reading
from pytest_robust.engine.tensor_memo import forget_unless_unchanged
from pytest_robust.engine.tensor_memo import remembered

# Values described per identity; a structure larger than this is not established.
BUDGET = 200_000
# Names every class has, which say nothing about its behaviour.
_CLASS_NOISE = frozenset(
    {
        "__module__", "__dict__", "__weakref__", "__doc__", "__qualname__", "__firstlineno__",
        "__static_attributes__", "__annotations__", "__orig_bases__", "__parameters__",
        "__abstractmethods__", "_abc_impl", "__slots__", "__match_args__", "__type_params__",
        "__annotate__", "__annotate_func__", "__annotations_cache__",
        "__dataclass_fields__", "__dataclass_params__",  # the generated methods are compared
    }
)  # fmt: skip
# Module state that does not change what forward computes (state-dict plumbing, mode).
_MODULE_NOISE = frozenset(
    {
        "training", "_non_persistent_buffers_set", "_state_dict_hooks",
        "_state_dict_pre_hooks", "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks",
        "_is_full_backward_hook", "_compiled_call_impl",
    }
)  # fmt: skip
# Hook tables: keyed by global handle counters, so only the hooks, in order, count.
_HOOKS = (
    "_forward_pre_hooks", "_forward_hooks", "_backward_pre_hooks", "_backward_hooks",
)  # fmt: skip
_HOOK_FLAGS = ("_forward_pre_hooks_with_kwargs", "_forward_hooks_with_kwargs",
               "_forward_hooks_always_called")  # fmt: skip
_GLOBAL_HOOKS = (
    "_global_forward_pre_hooks", "_global_forward_hooks", "_global_backward_pre_hooks",
    "_global_backward_hooks", "_global_forward_hooks_always_called",
)  # fmt: skip
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class made by a class statement (or a C heap type)
_PLAIN = (bool, int, float, complex, str, bytes)


def _pinned(cls_or_func: Any) -> bool:
    """Defined by torch or Python itself: identified by name, pinned by their versions."""
    module = getattr(cls_or_func, "__module__", None) or ""
    return module == "builtins" or module == "torch" or module.startswith("torch.")


def model_fingerprint(model: torch.nn.Module) -> str:
    """Digest of the class name and every parameter and buffer, by name: what a result
    records as `model_fingerprint` (the caches compare `model_identity`, which is more)."""
    return identify(model)[0]


class _Walk:
    """Describes values into one digest; a value met again is written as a back-reference
    (cycles, shared submodules), so the description is finite and stable."""

    def __init__(self) -> None:
        self.digest = hashlib.blake2b(digest_size=20)
        self.pending: list[str] = []
        self.seen: dict[int, int] = {}
        self.alive: list[Any] = []  # keeps ids unique during the walk
        self.count = 0
        self.classes: dict[type, str] = {}  # described once per walk
        self.tensors: dict[int, str] = {}  # each tensor's bytes are read once per walk
        self.reading = Reading()  # and its tracked state (three reductions) computed once

    def tensor(self, tensor: torch.Tensor) -> str:
        known = self.tensors.get(id(tensor))
        if known is None:  # read once per tensor object until it changes (tensor_memo)
            known = self.tensors[id(tensor)] = remembered(tensor, tensor_bytes, self.reading)
            self.alive.append(tensor)
        return known

    def class_id(self, cls: type) -> str:
        known = self.classes.get(cls)
        if known is None:
            known = self.classes[cls] = class_identity(cls)
        return known

    def put(self, *parts: str) -> None:
        self.pending.extend(parts)  # hashed together: the same bytes, part + NUL each
        if len(self.pending) > 4096:  # a large model's walk: bounded memory
            self.flush()

    def raw(self, data: bytes) -> None:
        self.flush()
        self.digest.update(data)

    def flush(self) -> None:
        if self.pending:
            self.digest.update(("\x00".join(self.pending) + "\x00").encode())
            self.pending.clear()

    def hexdigest(self) -> str:
        self.flush()
        return self.digest.hexdigest()

    def first_time(self, value: Any) -> bool:
        index = self.seen.get(id(value))
        if index is not None:
            self.put("ref", str(index))
            return False
        self.seen[id(value)] = len(self.seen)
        self.alive.append(value)
        return True

    def value(self, value: Any) -> None:
        # Longer than 60 lines on purpose: one dispatch over the kinds of value, whose
        # order is the precedence (plain values before the seen-before reference, a
        # Module before its generic object form); split up, that order would be hidden.
        self.count += 1
        if self.count > BUDGET:
            raise Unidentifiable(f"more than {BUDGET} values to describe")
        if value is None or value is Ellipsis or value is NotImplemented:
            self.put(repr(value))
        elif isinstance(value, enum.Enum):
            self.put("enum", type(value).__module__, type(value).__qualname__, value.name)
        elif type(value) in _PLAIN:
            self.put(type(value).__name__, repr(value))
        elif isinstance(value, (torch.dtype, torch.device, torch.Size, torch.layout)):
            self.put(type(value).__name__, str(value))
        elif not self.first_time(value):
            return
        elif isinstance(value, torch.nn.Module):
            self.module(value)
        elif isinstance(value, torch.Tensor):
            self.put("tensor", self.tensor(value))
        elif type(value).__module__ == "numpy" and hasattr(value, "tobytes"):
            self.put("numpy", str(getattr(value, "dtype", "")), str(getattr(value, "shape", "")))
            self.raw(value.tobytes())
        elif isinstance(value, (list, tuple)):
            self.put(type(value).__qualname__, str(len(value)))
            if type(value) not in (list, tuple):  # a namedtuple, say
                self.put(self.class_id(type(value)))
            for item in value:
                self.value(item)
        elif isinstance(value, dict):
            self.put(type(value).__qualname__, str(len(value)))
            if isinstance(value, defaultdict):
                self.value(value.default_factory)
            for key, item in value.items():
                self.value(key)
                self.value(item)
        elif isinstance(value, (set, frozenset)):
            if not all(item is None or type(item) in _PLAIN for item in value):
                raise Unidentifiable("a set of objects (no stable order)")
            self.put(type(value).__name__, repr(sorted(repr(item) for item in value)))
        elif isinstance(value, type):
            self.put("class", self.class_id(value))
        elif isinstance(value, (staticmethod, classmethod)):
            self.put(type(value).__name__)
            self.value(value.__func__)
        elif isinstance(value, property):
            self.put("property")
            for part in (value.fget, value.fset, value.fdel):
                self.value(part)
        elif isinstance(value, types.FunctionType):
            self.function(value)
        elif isinstance(value, types.MethodType):
            self.put("method")
            self.value(value.__self__)
            self.value(value.__func__)
        elif isinstance(value, functools.partial):
            self.put("partial")
            self.value(value.func)
            self.value(value.args)
            self.value(value.keywords)
        elif isinstance(value, (types.BuiltinFunctionType, types.WrapperDescriptorType,
                                types.MethodDescriptorType, types.MemberDescriptorType,
                                types.GetSetDescriptorType, types.MethodWrapperType,
                                types.ClassMethodDescriptorType)):  # fmt: skip
            owner = getattr(value, "__self__", None)
            self.put("builtin", getattr(value, "__module__", None) or "", value.__qualname__)
            if owner is not None and not isinstance(owner, (types.ModuleType, type)):
                self.value(owner)  # a bound method of a list, say
        elif isinstance(value, types.ModuleType):
            self.put("module", value.__name__)
        elif isinstance(value, weakref.ref):
            self.put("weakref")
            self.value(value())
        elif isinstance(value, logging.Logger):
            self.put("logger", value.name)
        elif _plain_object(value):
            self.put("object", self.class_id(type(value)))
            self.value(getattr(value, "__dict__", None))
            for name in _slots(type(value)):
                self.put(name)
                self.value(getattr(value, name, Ellipsis))
        else:
            raise Unidentifiable(f"a {type(value).__module__}.{type(value).__qualname__}")

    def identity(self, value: Any, include_global_hooks: bool = False) -> str | None:
        try:
            if include_global_hooks:
                from torch.nn.modules import module as torch_module

                for name in _GLOBAL_HOOKS:
                    table = getattr(torch_module, name, None)
                    if table:
                        self.put(name)
                        self.value(list(table.values()))
            if isinstance(value, torch.nn.Module):  # every weight's reductions in one batch
                self.reading.prime(_weights(value))
            self.value(value)
        except (Unidentifiable, RecursionError):
            return None
        return self.hexdigest()

    def function(self, function: types.FunctionType) -> None:
        self.put("function", function.__module__ or "", function.__qualname__)
        if _pinned(function):
            return
        code = function.__code__
        self.put(code_digest(code))
        self.value(function.__defaults__)
        self.value(function.__kwdefaults__)
        for cell in function.__closure__ or ():
            try:
                self.value(cell.cell_contents)
            except ValueError:  # an empty cell
                self.put("empty cell")
        self.code_globals(code, function.__globals__)

    def code_globals(self, code: types.CodeType, namespace: dict[str, Any]) -> None:
        """The globals the code names (module constants, helper functions), recursively
        through nested code (comprehensions, inner functions)."""
        for name in code.co_names:
            if name in namespace and not name.startswith("__"):
                self.put("global", name)
                self.value(namespace[name])
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                self.code_globals(const, namespace)

    def module(self, module: torch.nn.Module) -> None:
        self.put("nn.Module", self.class_id(type(module)))
        state = vars(module)  # a kernel may update one tensor unseen (BatchNorm statistics)
        forget_unless_unchanged(
            [*state["_parameters"].values(), *state["_buffers"].values()], self.reading
        )
        for name in sorted(state):
            if name in _MODULE_NOISE or name in _HOOK_FLAGS:
                continue
            self.put("attr", name)
            value = state[name]
            if name in ("_parameters", "_buffers", "_modules"):
                for key, item in value.items():  # in registration order
                    self.put(key)
                    self.value(item)
            elif name in _HOOKS:
                self.hooks(value, state)
            else:
                self.value(value)

    def hooks(self, table: dict[int, Any], state: dict[str, Any]) -> None:
        self.put(str(len(table)))
        for handle, hook in table.items():
            for flag in _HOOK_FLAGS:
                flagged = state.get(flag) or {}
                self.put(flag, str(handle in flagged and flagged[handle]))
            self.value(hook)


def _weights(model: torch.nn.Module) -> list[torch.Tensor]:
    """Every parameter and buffer of the module tree (shared ones once)."""
    found: dict[int, torch.Tensor] = {}
    for module in model.modules():
        state = vars(module)
        for tensor in [*state.get("_parameters", {}).values(), *state.get("_buffers", {}).values()]:
            if isinstance(tensor, torch.Tensor):
                found[id(tensor)] = tensor
    return list(found.values())


def _slots(cls: type) -> list[str]:
    names: list[str] = []
    for klass in cls.__mro__:
        slots = vars(klass).get("__slots__", ())
        names += [slots] if isinstance(slots, str) else [s for s in slots if s != "__dict__"]
    return [name for name in names if name != "__weakref__"]


def _plain_object(value: Any) -> bool:
    """An instance of classes written in Python, whose state is all in __dict__/__slots__."""
    cls = type(value)
    if not hasattr(value, "__dict__") and not _slots(cls):
        return False
    return all(klass is object or klass.__flags__ & _HEAPTYPE for klass in cls.__mro__)


def _class_digest(cls: type) -> str:
    walk = _Walk()
    walk.put("class", cls.__module__, cls.__qualname__)
    for klass in cls.__mro__:
        walk.put("base", klass.__module__, klass.__qualname__)
        if klass is object or _pinned(klass):
            continue
        for name, attr in sorted(vars(klass).items()):
            if name in _CLASS_NOISE:
                continue
            walk.put("member", name)
            if isinstance(attr, type) and attr is not cls and cls in attr.__mro__:
                walk.put("subclass")  # a nested subclass of itself
                continue
            walk.value(attr)
    return walk.hexdigest()


_CLASSES_IN_PROGRESS: set[int] = set()


def class_identity(cls: type) -> str:
    """The class's name and code (methods, class attributes, the globals they name).

    Raises Unidentifiable when some of it cannot be established. Recomputed on every call
    (a class attribute may have changed); the code digests it is made of are cached."""
    if _pinned(cls):
        return f"{cls.__module__}.{cls.__qualname__}"
    if id(cls) in _CLASSES_IN_PROGRESS:  # a method naming its own class: already described
        return f"self:{cls.__module__}.{cls.__qualname__}"
    _CLASSES_IN_PROGRESS.add(id(cls))
    try:
        return _class_digest(cls)
    finally:
        _CLASSES_IN_PROGRESS.discard(id(cls))


def identify(model: torch.nn.Module) -> tuple[str, str | None]:
    """(model_fingerprint, model_identity) in one walk: the weights are read once."""
    walk = _Walk()
    identity = walk.identity(model, include_global_hooks=True)
    weights = hashlib.blake2b(digest_size=16)
    weights.update(type(model).__qualname__.encode())
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        weights.update(name.encode() + b"\x00")
        try:
            weights.update(walk.tensor(tensor).encode())
        except Unidentifiable:
            weights.update(f"{tuple(tensor.shape)}|{tensor.dtype}|unreadable".encode())
    return weights.hexdigest(), identity


def model_identity(model: torch.nn.Module) -> str | None:
    """Everything about `model` that decides its outputs (module docstring), or None."""
    return _Walk().identity(model, include_global_hooks=True)


def value_identity(value: Any) -> str | None:
    """The content digest of any argument (a model, a callable, a tensor...), or None."""
    return _Walk().identity(value)
