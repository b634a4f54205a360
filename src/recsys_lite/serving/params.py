"""How routes read their parameters: query models validated in one step, ids in paths.

Every refusal is the ``RequestValidationError`` FastAPI raises for its own parameters, so a bad
parameter answers the same 422 body whichever way a route reads it.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import Path as PathParameter
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from recsys_lite.data.ids import MAX_ID_LENGTH, normalise_id
from recsys_lite.serving.schemas import ListQuery

QueryModel = TypeVar("QueryModel", bound=ListQuery)

# an id in a path: the same bounds as in a query; path_id applies the rest of the id rule
PathId = Annotated[str, PathParameter(min_length=1, max_length=MAX_ID_LENGTH)]


def read_query(model: type[QueryModel], request: Request, max_k: int) -> QueryModel:
    try:
        return model.model_validate(dict(request.query_params), context={"max_k": max_k})
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("query", *error["loc"])} for error in exc.errors()]
        ) from None


def path_id(value: str, name: str) -> str:
    """An id from the path, by the one id rule; refused with the same 422 as one in a query."""
    try:
        return normalise_id(value)
    except ValueError as exc:
        raise RequestValidationError(
            [{"loc": ("path", name), "msg": str(exc), "type": "value_error"}]
        ) from None


def query_parameters(model: type[BaseModel], max_k: int) -> dict[str, Any]:
    """OpenAPI parameters of a query model, for routes that validate their query themselves
    (required ones first, ``k`` bounded by ``MAX_RECOMMENDATIONS``)."""
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    parameters = []
    for name, field in schema["properties"].items():
        field = dict(field)
        if name == "k":
            field["maximum"] = max_k
        parameters.append(
            {
                "name": name,
                "in": "query",
                "required": name in required,
                "description": field.pop("description", ""),
                "schema": field,
            }
        )
    parameters.sort(key=lambda parameter: not parameter["required"])
    return {"parameters": parameters}
