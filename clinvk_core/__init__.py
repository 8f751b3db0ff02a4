"""clinvk core: everything the function handlers share.

Layers, outermost first: ``openai`` (wire format) -> ``gateway`` (routing, limits,
one CLI run per request) -> ``backends`` (per-CLI argv/env and output parsing, pure)
-> ``runner`` (process lifetime).
"""
