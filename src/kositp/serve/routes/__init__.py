"""The gateway's routers: generation (chat, completions), models, and service endpoints (health, docs)."""
