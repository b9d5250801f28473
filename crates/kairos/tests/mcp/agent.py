"""An agent's side of crates/kairos/tests/mcp.rs, written with the official MCP Python SDK
(PyPI `mcp`, 1.x): it connects to Kairos over streamable HTTP or by launching `kairos mcp`
(stdio), runs the scenario and prints one JSON line per step for the Rust test to check.

    agent.py http URL TOKEN_FILE OTHER_GRANT OTHER_REQUEST
    agent.py stdio KAIROS_BIN ADDR TOKEN_FILE OTHER_GRANT OTHER_REQUEST

OTHER_GRANT and OTHER_REQUEST belong to another identity.

The Rust test approves the pending request (as two people, over the API) while the
`request_admin` step waits for the decision.
"""

import asyncio
import json
import sys

from mcp import ClientSession, McpError
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamablehttp_client


def out(step, **fields):
    print(json.dumps({"step": step, **fields}), flush=True)


def tool(result):
    return {
        "isError": bool(result.isError),
        "structured": result.structuredContent,
        "text": [c.text for c in result.content if c.type == "text"],
    }


async def scenario(session, other_grant, other_request):
    init = await session.initialize()
    out(
        "initialize",
        protocol=init.protocolVersion,
        server=init.serverInfo.name,
        instructions=init.instructions,
        tools_capability=init.capabilities.tools is not None,
    )
    await session.send_ping()
    listed = await session.list_tools()
    out(
        "tools",
        names=[t.name for t in listed.tools],
        schemas={t.name: t.inputSchema for t in listed.tools},
    )
    out("list_entitlements", **tool(await session.call_tool("list_entitlements", {})))

    read = tool(
        await session.call_tool(
            "request_access",
            {
                "entitlement": "orders-api/read",
                "task_kind": "job",
                "task_ref": "run-7",
                "reason": "nightly export",
                "ttl": "10m",
            },
        )
    )
    out("request_read", **read)

    # Needs two approvals: the call waits while the test approves.
    out("waiting", entitlement="orders-api/admin")
    admin = tool(
        await session.call_tool(
            "request_access",
            {
                "entitlement": "orders-api/admin",
                "task_kind": "change",
                "task_ref": "CHG-9",
                "reason": "fix order 17",
                "ttl": "5m",
                "wait_seconds": 60,
            },
        )
    )
    out("request_admin", **admin)
    request_id = admin["structured"]["request"]["id"]
    out(
        "get_admin",
        **tool(
            await session.call_tool(
                "get_request", {"request_id": request_id, "wait_seconds": 5}
            )
        ),
    )
    out("list_grants", **tool(await session.call_tool("list_grants", {"state": "active"})))

    grant = read["structured"]["grant"]["id"]
    out("release", **tool(await session.call_tool("release", {"grant_id": grant})))
    out(
        "release_again",
        **tool(await session.call_tool("release", {"grant_id": grant})),
    )
    out(
        "release_other",
        **tool(await session.call_tool("release", {"grant_id": other_grant})),
    )
    out(
        "get_other_request",
        **tool(
            await session.call_tool(
                "get_request", {"request_id": other_request}
            )
        ),
    )
    out(
        "denied",
        **tool(
            await session.call_tool(
                "request_access",
                {
                    "entitlement": "orders-api/read",
                    "task_kind": "change",
                    "task_ref": "CHG-10",
                    "reason": "browse",
                },
            )
        ),
    )
    out(
        "as_other",
        **tool(
            await session.call_tool(
                "request_access",
                {
                    "entitlement": "orders-api/write",
                    "task_kind": "job",
                    "task_ref": "run-8",
                    "reason": "deploy",
                    "identity": "deployer",
                },
            )
        ),
    )
    out("bad_ttl", **tool(await session.call_tool(
        "request_access",
        {"entitlement": "orders-api/read", "task_kind": "job", "task_ref": "run-9",
         "reason": "x", "ttl": "forever"},
    )))
    try:
        await session.call_tool("drop_tables", {})
        out("unknown_tool", raised=None)
    except McpError as e:
        out("unknown_tool", raised=e.error.code, message=e.error.message)
    out("done")


async def main():
    mode = sys.argv[1]
    if mode == "http":
        url, token_file, other, other_request = sys.argv[2:6]
        token = open(token_file).read().strip()
        headers = {"Authorization": f"Bearer {token}"}
        async with streamablehttp_client(url, headers=headers) as (read, write, _):
            async with ClientSession(read, write) as session:
                await scenario(session, other, other_request)
    else:
        binary, addr, token_file, other, other_request = sys.argv[2:7]
        params = StdioServerParameters(
            command=binary,
            args=["mcp"],
            env={"KAIROS_ADDR": addr, "KAIROS_TOKEN_FILE": token_file},
        )
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await scenario(session, other, other_request)


asyncio.run(main())
