"""Every error a client can cause becomes an OpenAI-style body: `{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kositp.serve.backends.base import BackendRequestError, BackendUnavailable
from kositp.serve.schemas import error_body

log = logging.getLogger("kositp.serve")


class ApiError(Exception):
    """A refusal with its HTTP status, raised anywhere in a route and answered as an OpenAI error."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code=None, param=None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.headers = headers


def error_response(status: int, message: str, type_: str = "invalid_request_error", code=None, param=None,
                   headers=None) -> JSONResponse:
    return JSONResponse(error_body(message, type_, param, code), status_code=status, headers=headers)


def validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    """(one-line message naming the field, the top-level field) for the first validation error."""
    err = exc.errors()[0]
    # pydantic adds validator names ("function-after[...]") to locations: not the client's field names
    loc = [str(p) for p in err.get("loc", ()) if p != "body" and "[" not in str(p)]
    where = ".".join(loc)
    if err.get("type") == "json_invalid":
        return "request body is not valid JSON", None
    if not loc and err.get("type") in ("model_attributes_type", "dict_type", "model_type", "missing"):
        return "request body must be a JSON object (send Content-Type: application/json)", None
    msg = err.get("msg", "invalid request").removeprefix("Value error, ")
    return (f"{where}: {msg}" if where else msg), (loc[0] if loc else None)


def install_error_handlers(app: FastAPI, retry_after_s: int) -> None:
    @app.exception_handler(RequestValidationError)
    async def on_validation(_: Request, exc: RequestValidationError):
        message, param = validation_message(exc)
        return error_response(400, message, param=param)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_: Request, exc: StarletteHTTPException):
        type_ = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return error_response(exc.status_code, str(exc.detail), type_, headers=getattr(exc, "headers", None))

    @app.exception_handler(ApiError)
    async def on_api_error(_: Request, exc: ApiError):
        return error_response(exc.status, exc.message, exc.type, exc.code, exc.param, exc.headers)

    @app.exception_handler(BackendRequestError)
    async def on_backend_request(_: Request, exc: BackendRequestError):
        return error_response(exc.status, exc.message, code=exc.code, param=exc.param)

    @app.exception_handler(BackendUnavailable)
    async def on_unavailable(_: Request, exc: BackendUnavailable):
        return error_response(503, str(exc), "service_unavailable", headers={"Retry-After": str(retry_after_s)})

    @app.exception_handler(Exception)
    async def on_crash(_: Request, exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal server error", "server_error")
