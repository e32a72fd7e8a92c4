"""What every router needs: the app's `ServeState`, the API-key dependency, documented error responses."""

from __future__ import annotations

from fastapi import Request

from kositp.serve.state import ServeState

ERROR_RESPONSES = {
    400: {"description": "Invalid request (OpenAI error body)"},
    401: {"description": "Missing or invalid API key"},
    404: {"description": "Unknown model"},
    408: {"description": "Request body not received in time"},
    413: {"description": "Request body too large"},
    429: {"description": "Too many concurrent requests (see Retry-After)"},
    503: {"description": "Not ready or shutting down (see Retry-After)"},
}


def serve_state(request: Request) -> ServeState:
    return request.app.state.serve


async def require_key(request: Request) -> None:
    """401 unless the request carries one of the configured keys (no keys configured: open)."""
    serve_state(request).check_key(request)
