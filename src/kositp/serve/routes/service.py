"""Service endpoints: /health, /ready, /metrics, and the API description (/openapi.json, /docs, /redoc).

/health and /metrics are always open (probes and Prometheus carry no key). The API description
and the model ids in /ready are open only when `ServeState.public_metadata` says so (by default:
when no API key is configured); otherwise they need the key like /v1/models does.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import JSONResponse, Response

from kositp.serve.errors import error_response
from kositp.serve.routes.common import serve_state

router = APIRouter()


async def require_metadata_access(request: Request) -> None:
    state = serve_state(request)
    if not state.public_metadata:
        state.check_key(request)


@router.get("/health", summary="Liveness: the process answers.")
async def health():
    return {"status": "ok"}


@router.get("/ready", summary="Readiness: the model is loaded and the server is not draining.",
            responses={503: {"description": "Not ready (starting or draining)"}})
async def ready(request: Request):
    state = serve_state(request)
    if state.draining or not state.started or not state.backend.ready():
        return error_response(503, "not ready", "service_unavailable",
                              headers={"Retry-After": str(state.cfg.retry_after_s)})
    if not state.public_metadata:
        return {"status": "ready"}
    return {"status": "ready", "models": state.backend.model_ids}


@router.get("/metrics", summary="Prometheus metrics.")
async def prometheus_metrics(request: Request):
    state = serve_state(request)
    state.metrics.queue_depth.set(state.backend.queue_depth())
    for name, value in state.backend.stats().items():
        state.metrics.backend.labels(name).set(value)
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/openapi.json", include_in_schema=False, dependencies=[Depends(require_metadata_access)])
async def openapi(request: Request):
    return JSONResponse(request.app.openapi())


@router.get("/docs", include_in_schema=False, dependencies=[Depends(require_metadata_access)])
async def swagger(request: Request):
    return get_swagger_ui_html(openapi_url="/openapi.json", title=request.app.title + " - Swagger UI")


@router.get("/redoc", include_in_schema=False, dependencies=[Depends(require_metadata_access)])
async def redoc(request: Request):
    return get_redoc_html(openapi_url="/openapi.json", title=request.app.title + " - ReDoc")
