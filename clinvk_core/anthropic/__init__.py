"""The Anthropic Messages wire format (``/anthropic/v1``): request models, translation into the neutral
Conversation, the message and its SSE events, models, and errors in Anthropic's own shape."""
