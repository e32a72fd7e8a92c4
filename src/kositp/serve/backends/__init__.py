"""Generation backends behind the gateway: in-process transformers, or vLLM over HTTP."""
