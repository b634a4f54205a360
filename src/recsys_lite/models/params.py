"""Model hyperparameters: the base of every model's params, how they are parsed (unknown names
refused with the valid ones, wrong types named), and how they are described to a person.

The descriptions come from the same pydantic models that validate ``--params``, so the help
can never disagree with what is accepted.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from recsys_lite.data.interactions import Weighting
from recsys_lite.errors import InvalidInputError
from recsys_lite.models.registry import did_you_mean


class ModelParams(BaseModel):
    """Base of every model's hyperparameters; unknown keys are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")

    weighting: Weighting = Field(default_factory=Weighting)


P = TypeVar("P", bound=ModelParams)


@dataclass(frozen=True)
class ParamInfo:
    name: str  # dotted for nested blocks: weighting.qty
    type: str
    default: Any
    bounds: str
    description: str


def describe_params(params_type: type[BaseModel], prefix: str = "") -> list[ParamInfo]:
    """Every parameter, nested blocks flattened to dotted names, in declaration order."""
    found = []
    for name, field in params_type.model_fields.items():
        nested = _model_of(field.annotation)
        if nested is not None:
            found += describe_params(nested, f"{prefix}{name}.")
            continue
        found.append(
            ParamInfo(
                name=f"{prefix}{name}",
                type=type_name(field.annotation),
                default=_default(field),
                bounds=_bounds(field),
                description=field.description or "",
            )
        )
    return found


def parse_params(params_type: type[P], params: ModelParams | dict[str, Any] | None) -> P:
    if isinstance(params, params_type):
        return params
    raw = params.model_dump() if isinstance(params, ModelParams) else (params or {})
    if not isinstance(raw, dict):
        raise InvalidInputError("parameters must be a JSON object of name: value")
    try:
        return params_type.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_problem(params_type, error) for error in exc.errors())
        raise InvalidInputError(f"invalid parameters: {problems}") from exc


def _problem(params_type: type[BaseModel], error: Any) -> str:
    location = [str(part) for part in error["loc"]]
    where = ".".join(location)
    if error["type"] == "extra_forbidden":
        owner = _model_at(params_type, location[:-1])
        valid = list(owner.model_fields) if owner is not None else []
        return (
            f"unknown parameter {where!r}{did_you_mean(location[-1], valid)};"
            f" valid names: {', '.join(valid)}"
        )
    field = _field_at(params_type, location)
    expected = f" (expected {type_name(field.annotation)})" if field is not None else ""
    return f"{where}: {error['msg']}{expected}, got {error.get('input')!r}"


def _model_at(params_type: type[BaseModel], path: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = params_type
    for part in path:
        field = model.model_fields.get(part) if model is not None else None
        model = _model_of(field.annotation) if field is not None else None
    return model


def _field_at(params_type: type[BaseModel], path: list[str]) -> FieldInfo | None:
    owner = _model_at(params_type, path[:-1]) if path else None
    return owner.model_fields.get(path[-1]) if owner is not None else None


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def type_name(annotation: Any) -> str:
    """A reader's name for a type: int, float, list[int], one of 'a'/'b', ... or null."""
    if annotation is None or annotation is type(None):
        return "null"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return "one of " + "/".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is not None:
        inner = ", ".join(type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: FieldInfo) -> Any:
    if field.default_factory is not None:
        return field.default_factory()  # type: ignore[call-arg]
    return None if field.default is PydanticUndefined else field.default


_BOUND_SYMBOLS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))


def _bounds(field: FieldInfo) -> str:
    parts = []
    for constraint in field.metadata:
        for attribute, symbol in _BOUND_SYMBOLS:
            value = getattr(constraint, attribute, None)
            if value is not None:
                parts.append(f"{symbol} {value}")
        if isinstance(constraint, annotated_types.MinLen) and constraint.min_length:
            parts.append(f"length >= {constraint.min_length}")
        if isinstance(constraint, annotated_types.MaxLen):
            parts.append(f"length <= {constraint.max_length}")
    return ", ".join(parts)
