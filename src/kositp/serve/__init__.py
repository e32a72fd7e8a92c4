"""Serving stage: FastAPI OpenAI-compatible gateway over transformers or vLLM."""
