"""A shorter agent for crates/kairos/tests/mcp.rs, written with the 2.x API of the official
MCP Python SDK (PyPI `mcp`), through its high-level `Client` (which first probes
`server/discover`, and falls back to the `initialize` handshake when the server refuses the
probe): over stdio, and over streamable HTTP with the bearer token on an `httpx2` client.
Prints one JSON line per step.

    agent2.py KAIROS_BIN ADDR TOKEN_FILE OTHER_GRANT
"""

import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client


def out(step, **fields):
    print(json.dumps({"step": step, **fields}), flush=True)


def tool(result):
    return {
        "isError": bool(result.is_error),
        "structured": result.structured_content,
        "text": [c.text for c in result.content if c.type == "text"],
    }


async def work(call, transport, other_grant):
    granted = tool(
        await call(
            "request_access",
            {
                "entitlement": "orders-api/read",
                "task_kind": "job",
                "task_ref": f"run-{transport}",
                "reason": "nightly export",
                "ttl": "5m",
            },
        )
    )
    out(f"{transport}_request", **granted)
    grant = granted["structured"]["grant"]["id"]
    out(f"{transport}_release", **tool(await call("release", {"grant_id": grant})))
    out(f"{transport}_release_other", **tool(await call("release", {"grant_id": other_grant})))


async def main():
    binary, addr, token_file, other = sys.argv[1:5]
    params = StdioServerParameters(
        command=binary,
        args=["mcp"],
        env={"KAIROS_ADDR": addr, "KAIROS_TOKEN_FILE": token_file},
    )
    async with Client(params) as client:
        listed = await client.list_tools()
        out("stdio_tools", names=[t.name for t in listed.tools])
        await work(client.call_tool, "stdio", other)

    token = open(token_file).read().strip()
    headers = {"Authorization": f"Bearer {token}"}
    timeout = httpx2.Timeout(30, read=120)
    async with httpx2.AsyncClient(headers=headers, timeout=timeout) as http:
        transport = streamable_http_client(f"{addr}/v1/mcp", http_client=http)
        async with Client(transport) as client:
            listed = await client.list_tools()
            out("http_tools", names=[t.name for t in listed.tools])
            await work(client.call_tool, "http", other)
    out("done")


asyncio.run(main())
