"""The OpenAI wire format: request/response models, messages -> prompt, SSE, error bodies."""
