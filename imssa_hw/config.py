"""The base of every settings class kept in a file or sent to the board (as CrossSim's
`BaseParameters`): a frozen dataclass that checks itself in `__post_init__`, and this mixin
for the rest, so that each file format reads and writes its settings the same way.

    cfg = ModelConfig.from_dict(json.loads(text))   # unknown keys, wrong types: ConfigError
    text = json.dumps(cfg.to_dict())                # tuples as lists, nested settings as tables
    smaller = cfg.updated(h=8)                      # a checked copy

`typed` is the one reader of decoded JSON or TOML into dataclasses (the board protocol's
control messages use it too).
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from imssa_hw.errors import BadInput

C = TypeVar("C", bound="Config")


class FieldError(ValueError):
    """A decoded value that does not fit the type it is read as."""


class ConfigError(BadInput, ValueError):
    """Settings read from a dict that are not valid: unknown keys, wrong types, or values the
    class refuses. A BadInput (one line, exit 2), and a ValueError for readers that add the
    file's name."""


def typed(kind: Any, value: Any) -> Any:
    """`value` (decoded JSON or TOML) as type `kind`: dataclasses (nested; every field known,
    none missing that has no default), unions with None, tuples from lists, enums from their
    values, literals, bool, int, float (from an int too) and str. FieldError otherwise; a
    `Config` reads itself (`Config.from_dict`: ConfigError)."""
    if isinstance(kind, type) and issubclass(kind, Config):
        return kind.from_dict(value)
    if dataclasses.is_dataclass(kind):
        names = {f.name for f in dataclasses.fields(kind)}
        required = {f.name for f in dataclasses.fields(kind) if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING}
        if not isinstance(value, dict):
            raise FieldError(f"{kind.__name__}: expected an object with the fields "
                             f"{sorted(names)}")
        problems = [f"{what} field(s) {', '.join(sorted(keys))}" for what, keys in
                    (("unknown", set(value) - names), ("missing", required - set(value))) if keys]
        if problems:
            raise FieldError(f"{kind.__name__}: {'; '.join(problems)}")
        hints = get_type_hints(kind)
        try:
            return kind(**{name: typed(hints[name], item) for name, item in value.items()})
        except (ValueError, BadInput) as exc:
            raise FieldError(f"{kind.__name__}: {exc}") from None
    origin = get_origin(kind)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in get_args(kind):
            return None
        return typed(next(a for a in get_args(kind) if a is not type(None)), value)
    if origin is tuple:
        args = get_args(kind)
        if not isinstance(value, (list, tuple)) or (args[-1] is not Ellipsis
                                                    and len(value) != len(args)):
            raise FieldError(f"expected a list for {kind}, got {value!r}")
        items = args[:1] * len(value) if args[-1] is Ellipsis else args
        return tuple(typed(a, v) for a, v in zip(items, value))
    if origin is Literal:
        if value not in get_args(kind):
            raise FieldError(f"expected one of {list(get_args(kind))}, got {value!r}")
        return value
    if kind is Any:
        return value
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        try:
            return kind(value)
        except ValueError:
            raise FieldError(f"expected one of {[m.value for m in kind]}, got {value!r}") from None
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif isinstance(kind, type) and isinstance(value, kind) and not isinstance(value, bool):
        return value
    raise FieldError(f"expected {getattr(kind, '__name__', kind)}, got {value!r}")


def plain(value: Any) -> Any:
    """A value in its file form: dataclasses as dicts, tuples as lists, enums as their values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


class Config:
    """Mixin for a frozen settings dataclass: `to_dict`, `from_dict`, `updated`."""

    WHAT: ClassVar[str] = "settings"
    """How errors name these settings, e.g. "model config"."""

    def to_dict(self) -> dict[str, Any]:
        """The settings in file form (JSON or TOML), which `from_dict` reads back."""
        return plain(self)

    @classmethod
    def from_dict(cls: type[C], data: Any) -> C:
        """The settings of a dict (`to_dict`'s form); keys it lacks take their defaults. A
        number must be finite (JSON files can hold NaN). ConfigError names what is wrong."""
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.WHAT} must be a table of settings, got "
                              f"{type(data).__name__}")
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"unknown key(s) in the {cls.WHAT}: {', '.join(map(str, unknown))}")
        hints = get_type_hints(cls)
        values = {}
        for name, value in data.items():
            try:
                values[name] = typed(hints[name], value)
            except FieldError as exc:
                raise ConfigError(f"{name} in the {cls.WHAT}: {exc}") from None
            numbers = values[name] if isinstance(values[name], tuple) else (values[name],)
            if not all(math.isfinite(v) for v in numbers if isinstance(v, float)):
                raise ConfigError(f"{name} in the {cls.WHAT} must be finite, got {value!r}")
        try:
            return cls(**values)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{cls.WHAT}: {exc}") from None
        except BadInput as exc:
            raise ConfigError(str(exc)) from None

    def updated(self: C, **changes: Any) -> C:
        """A copy with `changes` (file-form values), checked as `from_dict` checks."""
        return type(self).from_dict({**self.to_dict(), **changes})
