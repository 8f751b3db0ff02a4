"""The OpenAI Responses API on the same core as chat completions.

``schema``     the request, and its input items, as strict pydantic models
``items``      input (a string or items) -> checked items with ids: what is stored and listed
``translate``  items (earlier turns' too) + tools, tool choice, text format... -> the neutral Conversation
``render``     a turn's events -> output items and the typed stream events; the response object
``stream``     ``stream: true``: the SSE response;  ``create``: POST /responses, buffered or streamed
``stored``     the stored conversation: previous_response_id, GET, input_items, DELETE
"""
