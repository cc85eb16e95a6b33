"""The msgpack codec of the wire protocol (`engine.wire`): what crosses
between a client and the Engine.

Only the wire types and the records they carry are registered, so the
actors' internal messages (`engine.messages`) cannot be decoded from
outside. A message is a registered frozen dataclass, packed as a map with its type
name under `~`. Decoding checks the type name, the field names and each
field's type against the dataclass's annotations, so a malformed, truncated
or hostile message is refused with `Invalid` naming what is wrong instead of
reaching an actor as a half-built object.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from enum import Enum
from typing import Any, Union

import msgpack

from petriflow.engine import records, wire
from petriflow.engine.errors import Invalid

TYPE_KEY = "~"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

_registry: dict[str, type] = {}
_hints: dict[type, dict[str, Any]] = {}


def register(cls: type) -> type:
    """Make a dataclass encodable; its name must be unique."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    existing = _registry.get(cls.__name__)
    if existing is not None and existing is not cls:
        raise TypeError(f"two message types are named {cls.__name__}")
    _registry[cls.__name__] = cls
    return cls


def registered() -> dict[str, type]:
    return dict(_registry)


def encode(message: Any) -> bytes:
    if type(message).__name__ not in _registry:
        raise Invalid(f"cannot encode {type(message).__name__}: not a registered message type")
    return msgpack.packb(_to_plain(message), use_bin_type=True)


def decode(data: Any) -> Any:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise Invalid(f"malformed message: expected bytes, got {type(data).__name__}")
    if len(data) > MAX_MESSAGE_BYTES:
        raise Invalid(f"message too large: {len(data)} bytes, at most {MAX_MESSAGE_BYTES}")
    try:
        plain = msgpack.unpackb(bytes(data), raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise Invalid(f"malformed message: not valid msgpack ({type(exc).__name__}: {exc})") from None
    if not isinstance(plain, dict) or TYPE_KEY not in plain:
        raise Invalid("malformed message: expected a map with a '~' type name")
    return _from_plain(plain, Any, "message")


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if name not in _registry:
            raise Invalid(f"cannot encode {name}: not a registered message type")
        plain = {TYPE_KEY: name}
        for f in dataclasses.fields(value):
            plain[f.name] = _to_plain(getattr(value, f.name))
        return plain
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise Invalid(f"cannot encode a map with a {type(key).__name__} key {key!r}: keys must be strings")
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        raise Invalid(f"cannot encode the integer {value}: msgpack holds 64 bits at most")
    if value is None or isinstance(value, (str, int, float, bool, bytes)):
        return value
    raise Invalid(f"cannot encode a value of type {type(value).__name__}")


def _field_hints(cls: type) -> dict[str, Any]:
    if cls not in _hints:
        _hints[cls] = typing.get_type_hints(cls)
    return _hints[cls]


def _build(plain: dict[str, Any], where: str) -> Any:
    name = plain.get(TYPE_KEY)
    cls = _registry.get(name) if isinstance(name, str) else None
    if cls is None:
        raise Invalid(f"{where}: unknown message type {name!r}")
    hints = _field_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(k for k in plain if k != TYPE_KEY and k not in fields)
    if unknown:
        raise Invalid(f"{name}: unknown field {unknown[0]!r}")
    kwargs = {}
    for fname, f in fields.items():
        if fname not in plain:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise Invalid(f"{name}: missing field {fname!r}")
            continue
        kwargs[fname] = _from_plain(plain[fname], hints[fname], f"{name}.{fname}")
    return cls(**kwargs)


def _from_plain(value: Any, hint: Any, where: str) -> Any:
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, dict) or value.get(TYPE_KEY) != hint.__name__:
            raise Invalid(f"{where}: expected a {hint.__name__}")
        return _build(value, where)
    if hint is Any:
        if isinstance(value, dict) and TYPE_KEY in value and where == "message":
            return _build(value, where)
        return value
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _from_plain(value, option, where)
            except Invalid as exc:
                errors.append(str(exc))
        raise Invalid(errors[0] if len(errors) == 1 else f"{where}: no type of {hint} fits {value!r:.80}")
    if origin is list:
        if not isinstance(value, list):
            raise Invalid(f"{where}: expected a list, got {type(value).__name__}")
        (item,) = typing.get_args(hint) or (Any,)
        return [_from_plain(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise Invalid(f"{where}: expected a map, got {type(value).__name__}")
        return value
    if isinstance(hint, type) and issubclass(hint, Enum):
        try:
            return hint(value)
        except ValueError:
            raise Invalid(f"{where}: {value!r:.80} is not one of {[m.value for m in hint]}") from None
    if hint is bool:
        if not isinstance(value, bool):
            raise Invalid(f"{where}: expected a boolean, got {type(value).__name__}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"{where}: expected an integer, got {type(value).__name__}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Invalid(f"{where}: expected a number, got {type(value).__name__}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise Invalid(f"{where}: expected a string, got {type(value).__name__}")
        return value
    raise Invalid(f"{where}: cannot decode a field of type {hint}")


for _module in (wire, records):
    for _value in list(vars(_module).values()):
        if isinstance(_value, type) and dataclasses.is_dataclass(_value) and _value.__module__ == _module.__name__:
            register(_value)
