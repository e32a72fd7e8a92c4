"""kositp: Korean smaller-LLM toolkit."""

__version__ = "0.1.0"
