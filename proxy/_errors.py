"""The proxy's exception tree, and its one translation into OpenAI's error shape.

    ProxyError                     any error the proxy itself answers with
    ├── InvalidRequest             400  bad JSON, bad parameter
    ├── AuthenticationFailed       401  missing, unknown or revoked key
    ├── PermissionDenied           403  admin API without the admin key
    ├── NotFound                   404  no such stored completion or route
    ├── Conflict                   409  a concurrent change won (two builds of one dataset)
    ├── MethodNotAllowed           405
    ├── PayloadTooLarge            413
    ├── UnsupportedMediaType       415
    ├── UpstreamUnavailable        502  upstream refused or dropped the connection
    ├── ServiceUnavailable         503  the database cannot be asked now
    └── UpstreamTimeout            504  upstream sent nothing in time

Errors the upstream itself returns are never translated: they pass through unchanged.
The curation services' ``finetune.CurationError`` becomes NotFound or InvalidRequest here,
and so does the dataset services' ``finetune.DatasetError`` (or Conflict), and the evaluation
services' ``finetune.EvaluationError``. The training services' ``finetune.TrainingError``
becomes NotFound, InvalidRequest, or UpstreamUnavailable when the backend cannot be reached.
The alias services' ``finetune.AliasError`` becomes NotFound, Conflict or InvalidRequest,
and so do the cycle services' ``finetune.CycleError`` and the promotion services'
``finetune.PromotionError``.
A database error reaching the edge is translated here too: a database that cannot be asked
is 503; one that refuses the values it was given (a number out of range, text too long for
its column) is the caller's bad input, 400; a constraint the values break is 409.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from typing import Any

import orjson
from litestar import Request, Response
from litestar.exceptions import HTTPException
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from finetune import (
    AliasConflict,
    AliasError,
    AliasNotFound,
    BackendUnavailable,
    CaptureNotFound,
    CurationError,
    CycleConflict,
    CycleError,
    CycleNotFound,
    DatasetConflict,
    DatasetError,
    DatasetNotFound,
    EvaluationError,
    EvaluationNotFound,
    PromotionConflict,
    PromotionError,
    PromotionNotFound,
    ServingError,
    StudentNotServed,
    StudentUnavailable,
    TrainingError,
    TrainingJobNotFound,
)
from storage import database_unreachable

log = logging.getLogger("stillroom.errors")


class ProxyError(Exception):
    status_code = 500
    error_type = "server_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class InvalidRequest(ProxyError):
    status_code = 400
    error_type = "invalid_request_error"


class AuthenticationFailed(ProxyError):
    status_code = 401
    error_type = "invalid_request_error"


class PermissionDenied(ProxyError):
    status_code = 403
    error_type = "invalid_request_error"


class NotFound(ProxyError):
    status_code = 404
    error_type = "invalid_request_error"


class Conflict(ProxyError):
    status_code = 409
    error_type = "invalid_request_error"


class MethodNotAllowed(ProxyError):
    status_code = 405
    error_type = "invalid_request_error"


class PayloadTooLarge(ProxyError):
    status_code = 413
    error_type = "invalid_request_error"


class UnsupportedMediaType(ProxyError):
    status_code = 415
    error_type = "invalid_request_error"


class UpstreamUnavailable(ProxyError):
    status_code = 502
    error_type = "upstream_error"


class ServiceUnavailable(ProxyError):
    status_code = 503
    error_type = "server_error"


class UpstreamTimeout(ProxyError):
    status_code = 504
    error_type = "upstream_error"


def error_body(message: str, error_type: str, *, param: str | None, code: str | None) -> bytes:
    return orjson.dumps(
        {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    )


def error_response(error: ProxyError, headers: dict[str, str] | None = None) -> Response[bytes]:
    body = error_body(error.message, error.error_type, param=error.param, code=error.code)
    return Response(
        body, status_code=error.status_code, media_type="application/json", headers=headers
    )


def handle_proxy_error(_: Request[Any, Any, Any], exc: ProxyError) -> Response[bytes]:
    return error_response(exc)


def handle_http_exception(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    """Litestar's own errors (no route, wrong method, body too large) in OpenAI's shape."""
    code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(
        exc.status_code
    )
    error_type = "server_error" if exc.status_code >= 500 else "invalid_request_error"
    # A body that failed validation: name its first bad field, as OpenAI's errors do.
    first = exc.extra[0] if isinstance(exc.extra, list) and exc.extra else None
    param = str(first["key"]) if isinstance(first, dict) and first.get("key") else None
    message = f"{exc.detail}: '{param}': {first.get('message')}" if first and param else None
    body = error_body(message or str(exc.detail), error_type, param=param, code=code)
    return Response(
        body,
        status_code=exc.status_code,
        media_type="application/json",
        headers=dict(exc.headers or {}),
    )


def handle_database_error(_: Request[Any, Any, Any], exc: SQLAlchemyError) -> Response[bytes]:
    if database_unreachable(exc):
        log.warning("database unavailable: %s", str(exc).splitlines()[0][:200])
        return error_response(
            ServiceUnavailable(
                "stillroom's database is unavailable; try again shortly.",
                code="database_unavailable",
            )
        )
    if isinstance(exc, IntegrityError):
        return error_response(
            Conflict("The request conflicts with what is stored.", code="conflict")
        )
    if isinstance(exc, DataError):
        return error_response(
            InvalidRequest(
                "A value in the request cannot be stored or compared: it is out of range, "
                "too long, or holds a character the database refuses.",
                code="invalid_value",
            )
        )
    return handle_unexpected(_, exc)


def handle_unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled error", exc_info=exc)
    body = error_body("internal error in stillroom", "server_error", param=None, code=None)
    return Response(body, status_code=500, media_type="application/json")


# Each service's refusals and the HTTP error each becomes. The first class that matches wins,
# so a specific refusal stands before its family.
_REFUSALS: tuple[tuple[type[Exception], type[ProxyError]], ...] = (
    (CaptureNotFound, NotFound),
    (CurationError, InvalidRequest),
    (DatasetNotFound, NotFound),
    (DatasetConflict, Conflict),
    (DatasetError, InvalidRequest),
    (EvaluationNotFound, NotFound),
    (EvaluationError, InvalidRequest),
    (AliasNotFound, NotFound),
    (AliasConflict, Conflict),
    (AliasError, InvalidRequest),
    (CycleNotFound, NotFound),
    (CycleConflict, Conflict),
    (CycleError, InvalidRequest),
    (PromotionNotFound, NotFound),
    (StudentUnavailable, UpstreamUnavailable),
    (StudentNotServed, UpstreamUnavailable),
    (ServingError, InvalidRequest),
    (PromotionConflict, Conflict),
    (PromotionError, InvalidRequest),
    (TrainingJobNotFound, NotFound),
    (BackendUnavailable, UpstreamUnavailable),
    (TrainingError, InvalidRequest),
)


def handle_refusal(_: Request[Any, Any, Any], exc: Any) -> Response[bytes]:
    """A service refused: unknown things are 404, races 409, an unreachable backend 502,
    anything else (bad data, a backend's refusal such as closed fine-tuning) 400."""
    kind = next(http for domain, http in _REFUSALS if isinstance(exc, domain))
    return error_response(kind(exc.message, param=exc.param, code=exc.code))


EXCEPTION_HANDLERS: MutableMapping[int | type[Exception], Callable[[Any, Any], Response[Any]]] = {
    ProxyError: handle_proxy_error,
    CurationError: handle_refusal,
    DatasetError: handle_refusal,
    EvaluationError: handle_refusal,
    AliasError: handle_refusal,
    TrainingError: handle_refusal,
    CycleError: handle_refusal,
    PromotionError: handle_refusal,
    ServingError: handle_refusal,
    HTTPException: handle_http_exception,
    SQLAlchemyError: handle_database_error,
    Exception: handle_unexpected,
}


def error_parts(exc: Exception) -> tuple[int, bytes, dict[str, str]]:
    """The status, body and headers ``EXCEPTION_HANDLERS`` answer ``exc`` with: the same
    translation for the hot path, which answers outside the framework's routing."""
    handler: Callable[[Any, Any], Response[Any]] = next(
        (EXCEPTION_HANDLERS[kind] for kind in type(exc).__mro__ if kind in EXCEPTION_HANDLERS),
        handle_unexpected,
    )
    response: Response[bytes] = handler(None, exc)  # the handlers never read the request
    headers = {str(name).lower(): str(value) for name, value in response.headers.items()}
    headers.setdefault("content-type", str(response.media_type or "application/json"))
    return response.status_code or 500, response.content, headers
