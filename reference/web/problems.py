"""RFC 9457 problem details: every refusal of the web listener, as application/problem+json."""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from reference.web.models import FieldError, Problem

__all__ = ["PROBLEM_TYPE", "HttpProblem", "from_validation", "problem_response"]

PROBLEM_TYPE = "application/problem+json"


class HttpProblem(Exception):
    """Raised by a handler to answer with a problem; ``field`` names the input at fault."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        field: str | None = None,
        errors: Sequence[FieldError] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field
        self.errors = list(errors) or ([FieldError(field=field, detail=detail)] if field else [])
        self.headers = headers or {}


def problem_response(problem: HttpProblem) -> web.Response:
    body = Problem(
        title=HTTPStatus(problem.status).phrase,
        status=problem.status,
        detail=problem.detail,
        field=problem.field or (problem.errors[0].field if problem.errors else None),
        errors=problem.errors,
    )
    return web.Response(
        status=problem.status,
        body=body.model_dump_json(exclude_none=True).encode(),
        content_type=PROBLEM_TYPE,
        headers=problem.headers,
    )


def _field(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc) or "(body)"


def from_validation(error: ValidationError) -> HttpProblem:
    """A body pydantic refused: 400 when it is not JSON at all, else 422 naming each field."""
    errors = [
        FieldError(field=_field(e["loc"]), detail=e["msg"]) for e in error.errors(include_url=False)
    ]
    if any(e["type"] == "json_invalid" for e in error.errors(include_url=False)):
        return HttpProblem(400, "the body is not valid JSON", errors=errors)
    summary = "; ".join(f"{e.field}: {e.detail}" for e in errors)
    return HttpProblem(422, summary, errors=errors)
