"""API keys and the request body guard (size cap, read timeout, one framing)."""

from __future__ import annotations

import asyncio
import hmac
import json
import os
from pathlib import Path

from kositp.errors import KositpError
from kositp.serve.schemas import error_body


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


class RequestBodyGuard:
    """ASGI middleware: the app only ever sees a request body that arrived whole, within limits.

    The body is read here, counting the bytes actually received whatever the framing says: over
    `limit` bytes is 413, and a body not complete within `timeout_s` (a Content-Length larger than
    what is sent, a stalled upload) is 408. A request carrying both Content-Length and
    Transfer-Encoding is refused with 400, as RFC 9112 (section 6.3) allows, since the two framings
    disagree about where the body ends (request smuggling). The read body is then replayed to the app.
    """

    def __init__(self, app, limit: int, timeout_s: float) -> None:
        self.app = app
        self.limit = limit
        self.timeout_s = timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = scope.get("headers") or []
        lengths = {v.strip() for k, v in headers if k.lower() == b"content-length"}
        chunked = any(k.lower() == b"transfer-encoding" for k, _ in headers)
        if lengths and chunked:
            return await self._reject(send, 400, "a request may not carry both Content-Length and "
                                                 "Transfer-Encoding (RFC 9112, section 6.3)")
        if len(lengths) > 1:
            return await self._reject(send, 400, "conflicting Content-Length headers")
        if lengths:
            try:
                declared = int(next(iter(lengths)))
            except ValueError:
                return await self._reject(send, 400, "invalid Content-Length header")
            if declared < 0:
                return await self._reject(send, 400, "invalid Content-Length header")
            if declared > self.limit:
                return await self._reject(send, 413, f"request body exceeds {self.limit} bytes")
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.timeout_s):
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
        except TimeoutError:
            return await self._reject(send, 408, f"request body not received within {self.timeout_s:g} s "
                                                 f"({size} bytes arrived)")
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
        body = json.dumps(error_body(message)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": body})
