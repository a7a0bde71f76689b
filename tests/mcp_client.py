"""An MCP client session (the `mcp` Python SDK, Streamable HTTP) against the function app's
`/runtime/webhooks/mcp`, for the tests and the bench: what Azure SRE Agent or VS Code does."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mcp import ClientSession
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client

WEBHOOK = "/runtime/webhooks/mcp"


@asynccontextmanager
async def mcp_session(functions_url: str, key: str | None) -> AsyncIterator[ClientSession]:
    """An initialized session; `key` goes in x-functions-key (None: no key)."""
    headers = {"x-functions-key": key} if key else {}
    async with (
        create_mcp_http_client(headers=headers) as http,
        streamable_http_client(functions_url + WEBHOOK, http_client=http) as streams,
        ClientSession(streams[0], streams[1]) as session,
    ):
        await session.initialize()
        yield session


@asynccontextmanager
async def mcp_sse_session(functions_url: str, key: str) -> AsyncIterator[ClientSession]:
    """The same over the extension's legacy SSE transport (`/runtime/webhooks/mcp/sse`)."""
    from mcp.client.sse import sse_client

    headers = {"x-functions-key": key}
    async with (
        sse_client(functions_url + WEBHOOK + "/sse", headers=headers) as streams,
        ClientSession(streams[0], streams[1]) as session,
    ):
        await session.initialize()
        yield session


async def call(session: ClientSession, tool: str, **arguments: Any) -> tuple[bool, Any]:
    """(is_error, structured content) of one tool call; the text block must say the same."""
    result: Any = await session.call_tool(tool, arguments)
    text = "".join(getattr(block, "text", "") for block in result.content)
    structured = result.structured_content
    assert json.loads(text) == structured, (tool, text[:300])
    return bool(result.is_error), structured
