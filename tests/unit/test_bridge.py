"""The tool bridge: an MCP endpoint on loopback that lists a run's tools and never runs them."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from clinvk_core.bridge import PROTOCOL_VERSIONS, BridgeSession, ToolBridge
from clinvk_core.conversation import ToolSpec

WEATHER = ToolSpec("get_weather", "The weather now", {"type": "object", "properties": {"city": {"type": "string"}}})
BRIDGE = ToolBridge()  # one per process, as in the gateway


def rpc(method: str, request_id: Any = 1, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


async def post(client: httpx.AsyncClient, session: BridgeSession, payload: Any) -> httpx.Response:
    return await client.post(session.url, json=payload)


def test_it_lists_exactly_the_runs_tools_on_loopback() -> None:
    async def go() -> None:
        async with BRIDGE.session((WEATHER,)) as session, httpx.AsyncClient() as client:
            assert session.url.startswith("http://127.0.0.1:")
            init = (await post(client, session, rpc("initialize", protocolVersion="2025-06-18"))).json()
            assert init["result"]["protocolVersion"] == "2025-06-18"
            assert init["result"]["capabilities"] == {"tools": {"listChanged": False}}
            unknown = (await post(client, session, rpc("initialize", protocolVersion="1999-01-01"))).json()
            assert unknown["result"]["protocolVersion"] == PROTOCOL_VERSIONS[-1]
            listed = (await post(client, session, rpc("tools/list", 2))).json()
            tool = {"name": "get_weather", "description": "The weather now", "inputSchema": WEATHER.parameters}
            assert listed == {"jsonrpc": "2.0", "id": 2, "result": {"tools": [tool]}}

    asyncio.run(go())


def test_a_call_is_reported_and_held_until_the_session_ends() -> None:
    async def go() -> None:
        async with httpx.AsyncClient() as client:
            async with BRIDGE.session((WEATHER,)) as session:
                call = asyncio.ensure_future(post(client, session, rpc("tools/call", 3, name="get_weather")))
                await asyncio.wait_for(session.wait_called(), 5)
                assert session.called
                await asyncio.sleep(0.1)
                assert not call.done()  # nothing ran, nothing answered
            answer = (await asyncio.wait_for(call, 5)).json()
            assert answer["id"] == 3
            assert "error" in answer  # released when the run ended: the client runs its own tools

    asyncio.run(go())


def test_notifications_methods_and_bad_input() -> None:
    async def go() -> None:
        async with BRIDGE.session(()) as session, httpx.AsyncClient() as client:
            notified = await post(client, session, {"jsonrpc": "2.0", "method": "notifications/initialized"})
            assert (notified.status_code, notified.content) == (202, b"")
            assert (await post(client, session, rpc("ping", 4))).json()["result"] == {}
            assert (await post(client, session, rpc("resources/list", 5))).json()["error"]["code"] == -32601
            batch = (await post(client, session, [rpc("ping", 6), {"jsonrpc": "2.0", "method": "x"}])).json()
            assert [reply["id"] for reply in batch] == [6]
            garbage = await client.post(session.url, content=b"{not json")
            assert garbage.json()["error"]["code"] == -32700
            assert (await client.get(session.url)).status_code == 405  # no server-sent event stream
            assert (await client.delete(session.url)).status_code == 405

    asyncio.run(go())


def test_only_an_open_sessions_secret_path_answers() -> None:
    async def go() -> None:
        async with BRIDGE.session((WEATHER,)) as session, httpx.AsyncClient() as client:
            base = session.url.rsplit("/", 1)[0]
            assert (await client.post(f"{base}/guess", json=rpc("tools/list"))).status_code == 404
            assert (await client.post(base.rsplit("/mcp", 1)[0] + "/", json=rpc("tools/list"))).status_code == 404
            other = session.url
        async with httpx.AsyncClient() as client:
            assert (await client.post(other, json=rpc("tools/list"))).status_code == 404  # gone with its run

    asyncio.run(go())


def test_sessions_have_distinct_secrets() -> None:
    async def go() -> set[str]:
        urls = set()
        for _ in range(20):
            async with BRIDGE.session(()) as session:
                urls.add(session.url)
        return urls

    urls = asyncio.run(go())
    assert len(urls) == 20
    assert all(len(url.rsplit("/", 1)[1]) == 32 for url in urls)  # 24 random bytes, URL-safe base64
