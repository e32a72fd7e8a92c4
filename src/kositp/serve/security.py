"""API keys and the request body size cap."""

from __future__ import annotations

import hmac
import json
import os
from pathlib import Path

from kositp.errors import KositpError


def load_api_keys(key_file: Path | None, env_var: str) -> list[bytes]:
    """Keys from the file (one a line, # comments) and the environment variable (comma-separated)."""
    keys: list[str] = []
    if key_file is not None:
        path = Path(key_file)
        if not path.is_file():
            raise KositpError(f"API key file not found: {path}")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise KositpError(f"API key file {path} is not UTF-8 text") from None
        keys += [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
        if not keys:
            raise KositpError(f"API key file {path} holds no key")
    keys += [k.strip() for k in os.environ.get(env_var, "").split(",") if k.strip()]
    return [k.encode("utf-8") for k in keys]


def key_matches(presented: str, keys: list[bytes]) -> bool:
    """Constant-time comparison against every key (no early exit that would leak which one is close).

    `presented` is the header value as Starlette decodes it (latin-1), so encoding it back to latin-1
    gives the raw bytes on the wire: a UTF-8 key (e.g. with Hangul) matches byte for byte.
    """
    candidate = presented.encode("latin-1", "replace")
    found = False
    for key in keys:
        found |= hmac.compare_digest(candidate, key)
    return found


class BodySizeLimit:
    """ASGI middleware: a body over `limit` bytes gets 413 before it is read into memory."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > self.limit
            except ValueError:
                return await self._reject(send, 400, "invalid Content-Length header")
            if too_big:
                return await self._reject(send, 413, f"request body exceeds {self.limit} bytes")
            return await self.app(scope, receive, send)  # the server holds the body to its declared length
        # No Content-Length (chunked upload): read up to the cap here, then replay it to the app.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await self._reject(send, 413, f"request body exceeds {self.limit} bytes")
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _reject(send, status: int, message: str) -> None:
        body = json.dumps(
            {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
