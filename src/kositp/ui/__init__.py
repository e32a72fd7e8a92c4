"""Chat page: a Chainlit app that talks only to the OpenAI-compatible API."""
