"""The OpenAPI 3.1 document of the admin API, made from the route table and its models."""

from __future__ import annotations

import re
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from reference import __version__
from reference.web.api import Route
from reference.web.models import Problem
from reference.web.problems import PROBLEM_TYPE

__all__ = ["document"]

_REF = "#/components/schemas/{model}"
_ERRORS = {
    "400": "the body is not JSON, or this endpoint takes none",
    "401": "no credentials, or wrong ones",
    "403": "not the caller's: another domain, another account, or a role that may not",
    "404": "no such domain, account, alias or queued message",
    "409": "it exists already",
    "413": "the body is too large",
    "415": "the body is not application/json",
    "422": "a field is invalid (named in the problem's field and errors)",
    "429": "locked after failed logins (Retry-After)",
}


def _schema(model: type[BaseModel], mode: str, components: dict[str, Any]) -> dict[str, Any]:
    """A $ref to ``model``, its schema (and those it uses) added to ``components``."""
    schema = model.model_json_schema(ref_template=_REF, mode=mode)  # type: ignore[arg-type]
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": _REF.format(model=model.__name__)}


def _response_schema(response: Any, components: dict[str, Any]) -> dict[str, Any]:
    if typing.get_origin(response) is list:
        (item,) = typing.get_args(response)
        return {"type": "array", "items": _schema(item, "serialization", components)}
    return _schema(response, "serialization", components)


def _query_parameters(model: type[BaseModel] | None) -> list[dict[str, Any]]:
    if model is None:
        return []
    schema = model.model_json_schema(mode="validation")
    required = set(schema.get("required", []))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "description": prop.pop("description", ""),
            "schema": prop,
        }
        for name, prop in schema["properties"].items()
    ]


def document(routes: Sequence[Route], max_body: int) -> dict[str, Any]:
    components: dict[str, Any] = {}
    problem = {PROBLEM_TYPE: {"schema": _schema(Problem, "serialization", components)}}
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        op: dict[str, Any] = {
            "summary": r.summary,
            "operationId": r.method.lower() + re.sub(r"[^a-z0-9]+", "_", r.path[7:]).rstrip("_"),
            "x-roles": sorted(r.roles),
            "description": f"Roles: {', '.join(sorted(r.roles))}.",
            "parameters": [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in re.findall(r"{(\w+)}", r.path)
            ]
            + _query_parameters(r.query),
            "responses": {
                str(r.status): {"description": "done"}
                if r.response is None
                else {
                    "description": "done",
                    "content": {
                        "application/json": {"schema": _response_schema(r.response, components)}
                    },
                },
                **{code: {"description": why, "content": problem} for code, why in _ERRORS.items()},
            },
        }
        if r.body is not None:
            op["requestBody"] = {
                "required": True,
                "description": f"at most {max_body} bytes; unknown fields are refused",
                "content": {
                    "application/json": {"schema": _schema(r.body, "validation", components)}
                },
            }
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mailspec admin API",
            "version": __version__,
            "description": "Domains, accounts, aliases, DKIM keys and the queue of one node. "
            "Errors are RFC 9457 problem details naming the field at fault.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "token": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "mailspec token create",
                },
                "password": {"type": "http", "scheme": "basic", "description": "a user's own"},
            },
        },
        "security": [{"token": []}, {"password": []}],
    }
