"""One module per endpoint; each exposes ``app`` (ASGI) and ``handler`` (the Lambda entry point)."""
