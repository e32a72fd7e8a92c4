"""GET /v1/models and /v1/models/{model}: what `client.models.list()` and `.retrieve()` call."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request

from kositp.serve.errors import ApiError
from kositp.serve.routes.common import ERROR_RESPONSES, require_key, serve_state

router = APIRouter(dependencies=[Depends(require_key)], responses=ERROR_RESPONSES)


def model_object(model_id: str, created: int) -> dict:
    return {"id": model_id, "object": "model", "created": created, "owned_by": "kositp"}


@router.get("/v1/models")
async def list_models(request: Request):
    now = int(time.time())
    return {"object": "list", "data": [model_object(m, now) for m in serve_state(request).backend.model_ids]}


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, request: Request):
    ids = serve_state(request).backend.model_ids
    if model_id not in ids:
        raise ApiError(404, f"model '{model_id}' is not served here; available: {', '.join(ids)}",
                       "not_found_error", code="model_not_found", param="model")
    return model_object(model_id, int(time.time()))
