"""Registries: components chosen by name.

Each kind of component (architectures, losses, datasets, ...) has one `Registry`. A component registers a class or a
factory under a name; its docstring's first line is the description shown by `ganforge list`. Its keyword parameters
*are* its config: `validate(name, options)` checks user options against the signature (unknown keys, wrong types)
and `build(name, options, **context)` calls it. `context` holds what the framework injects (e.g. `num_classes`),
which users cannot set from YAML.
"""
from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .errors import GanforgeError


@dataclass(frozen=True)
class Entry:
    name: str
    obj: Callable[..., Any]
    description: str
    context: tuple[str, ...]  # parameters injected by the framework, not settable by users

    def options(self) -> dict[str, inspect.Parameter]:
        """User-settable keyword parameters (name -> Parameter)."""
        try:
            sig = inspect.signature(self.obj, eval_str=True)
        except (NameError, TypeError):
            sig = inspect.signature(self.obj)
        return {
            n: p
            for n, p in sig.parameters.items()
            if n not in self.context and n != "self"
            and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        }

    def defaults(self) -> dict[str, Any]:
        return {n: p.default for n, p in self.options().items() if p.default is not p.empty}

    def declares(self, attribute: str, default: Any = None) -> Any:
        """What the component declares about itself (a class attribute such as `uses_labels`), else `default`.

        The framework reads capabilities from here (does it need labels, which D outputs does it provide or need),
        never from the component's name.
        """
        return getattr(self.obj, attribute, default)

    def accepts(self, parameter: str) -> bool:
        """Whether the component's constructor takes `parameter` (e.g. an optional piece of build context)."""
        return parameter in inspect.signature(self.obj).parameters

    def takes_all_context(self) -> bool:
        """Whether the constructor collects `**context` (a wrapper handing the build context to what it builds).

        The parameter must be named `context`: an inherited `**kwargs` (nn.Module's `__init__(*args, **kwargs)`)
        does not ask for anything."""
        return any(p.kind is p.VAR_KEYWORD and name == "context"
                   for name, p in inspect.signature(self.obj).parameters.items())

    def wants_context(self, parameter: str) -> bool:
        """Whether the framework should hand the constructor this piece of build context."""
        return self.accepts(parameter) or self.takes_all_context()


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n")[0].strip()


_SIMPLE = {int: "int", float: "float", bool: "bool", str: "str"}


def check_type(value: Any, annotation: Any, where: str) -> Any:
    """Check (and lightly coerce int->float, list->tuple) `value` against a type annotation; raise a one-line error."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return value
    if isinstance(annotation, str):  # unresolved forward reference: skip
        return value
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        errors = []
        for a in args:
            try:
                return check_type(value, a, where)
            except GanforgeError as e:
                errors.append(e)
        raise GanforgeError(f"{where}: expected {_type_name(annotation)}, got {value!r}")
    if annotation is type(None):
        if value is None:
            return None
        raise GanforgeError(f"{where}: expected None, got {value!r}")
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise GanforgeError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise GanforgeError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation in (bool, str):
        if not isinstance(value, annotation):
            raise GanforgeError(f"{where}: expected {_SIMPLE[annotation]}, got {value!r}")
        return value
    if origin in (list, tuple, typing.Sequence) or annotation in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise GanforgeError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise GanforgeError(f"{where}: expected {len(args)} values, got {value!r}")
            return tuple(check_type(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        out = [check_type(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise GanforgeError(f"{where}: expected a mapping, got {value!r}")
        return value
    if origin is typing.Literal:
        if value not in args:
            raise GanforgeError(f"{where}: expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    return value


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


class Registry:
    """Named components of one kind. `@REG.register("name")` on a class or factory function."""

    def __init__(self, kind: str, context: Iterable[str] = ()):
        self.kind = kind
        self.context = tuple(context)
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, description: str | None = None) -> Callable:
        def deco(obj: Callable) -> Callable:
            if name in self._entries:
                raise RuntimeError(f"{self.kind} '{name}' registered twice")
            self._entries[name] = Entry(name, obj, description or _first_line(obj.__doc__), self.context)
            return obj

        return deco

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str, where: str | None = None) -> Entry:
        if name not in self._entries:
            key = where or self.kind
            raise GanforgeError(f"{key}: unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}")
        return self._entries[name]

    def describe(self) -> list[tuple[str, str]]:
        return [(n, self._entries[n].description) for n in self.names()]

    def validate(self, name: str, options: dict[str, Any], where: str | None = None) -> dict[str, Any]:
        """Check `options` against the component's signature; return them with types coerced."""
        where = where or self.kind
        entry = self.get(name, where)
        params = entry.options()
        out = {}
        for key, value in options.items():
            if key not in params:
                valid = ", ".join(sorted(params)) or "(none)"
                raise GanforgeError(f"{where}.{key}: unknown option for {self.kind} {name!r}; valid options: {valid}")
            out[key] = check_type(value, params[key].annotation, f"{where}.{key}")
        missing = [n for n, p in params.items() if p.default is p.empty and n not in out]
        if missing:
            raise GanforgeError(f"{where}: {self.kind} {name!r} needs option(s): {', '.join(missing)}")
        return out

    def build(self, name: str, options: dict[str, Any] | None = None, where: str | None = None, **context: Any) -> Any:
        """Validate user `options`, then call the component with them plus framework `context`."""
        entry = self.get(name, where)
        opts = self.validate(name, dict(options or {}), where)
        ctx = {k: v for k, v in context.items() if entry.wants_context(k)}
        return entry.obj(**ctx, **opts)
