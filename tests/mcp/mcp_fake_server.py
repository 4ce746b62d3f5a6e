"""A small real MCP server (the SDK's low-level Server over stdio) for flowrun's MCP tests.

Its tools cover what mcp-server-git does not: structured output, a write tool with
annotations, a destructive one, a crash mid-call, a schema-violating result and a slow tool.
A notes file (argv[1]) records the writes, so a test can see whether one really happened.
`FAKE_MCP_VARIANT=changed` changes `lookup`'s schema and hints (a stale lock).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import anyio
from mcp.server import Server
from mcp.server.stdio import stdio_server
from mcp.types import CallToolResult, ListToolsResult, TextContent, Tool, ToolAnnotations

NOTES = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("notes.jsonl")
CHANGED = os.environ.get("FAKE_MCP_VARIANT") == "changed"

READ = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
LOOKUP_OUT = {
    "type": "object",
    "properties": {"sku": {"type": "string"}, "stock": {"type": "integer"}},
    "required": ["sku", "stock"],
}


def _obj(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required}


TOOLS = [
    Tool(
        name="lookup",
        description="Stock level of one SKU.",
        input_schema=_obj(
            {"sku": {"type": "string"}, **({"warehouse": {"type": "string"}} if CHANGED else {})},
            ["sku", "warehouse"] if CHANGED else ["sku"],
        ),
        output_schema=LOOKUP_OUT,
        annotations=ToolAnnotations(read_only_hint=False) if CHANGED else READ,
    ),
    Tool(
        name="add_note",
        description="Append a note (a write; not idempotent).",
        input_schema=_obj({"text": {"type": "string"}}, ["text"]),
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=False
        ),
    ),
    Tool(
        name="wipe",
        description="Delete every note.",
        input_schema=_obj({}, []),
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True),
    ),
    Tool(
        name="crash",
        description="Exits the server process in the middle of the call.",
        input_schema=_obj({}, []),
        annotations=READ,
    ),
    Tool(
        name="bad_result",
        description="Answers with structured content that breaks its own outputSchema.",
        input_schema=_obj({}, []),
        output_schema=LOOKUP_OUT,
        annotations=READ,
    ),
    Tool(
        name="slow",
        description="Sleeps before answering.",
        input_schema=_obj({"seconds": {"type": "number"}}, ["seconds"]),
        annotations=READ,
    ),
    Tool(
        name="fail",
        description="Always answers with an error result.",
        input_schema=_obj({}, []),
        annotations=READ,
    ),
]


def _text(value: Any) -> list[TextContent]:
    return [TextContent(type="text", text=value if isinstance(value, str) else json.dumps(value))]


async def list_tools(ctx: Any, params: Any) -> ListToolsResult:
    return ListToolsResult(tools=TOOLS)


async def call_tool(ctx: Any, params: Any) -> CallToolResult:
    args = params.arguments or {}
    name = params.name
    if name == "lookup":
        out = {"sku": args["sku"], "stock": 7}
        return CallToolResult(content=_text(out), structured_content=out)
    if name == "add_note":
        with NOTES.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"text": args["text"], "pid": os.getpid()}) + "\n")
        return CallToolResult(content=_text(f"noted: {args['text']}"))
    if name == "wipe":
        NOTES.unlink(missing_ok=True)
        return CallToolResult(content=_text("wiped"))
    if name == "crash":
        os._exit(3)
    if name == "bad_result":
        out = {"sku": 42}
        return CallToolResult(content=_text(out), structured_content=out)
    if name == "slow":
        await anyio.sleep(float(args["seconds"]))
        return CallToolResult(content=_text("done"))
    if name == "fail":
        return CallToolResult(content=_text("the warehouse API said no"), is_error=True)
    return CallToolResult(content=_text(f"unknown tool {name}"), is_error=True)


server: Server[Any] = Server(
    "flowrun-fake", version="1.0", on_list_tools=list_tools, on_call_tool=call_tool
)


async def main() -> None:
    with (NOTES.parent / "starts.log").open("a", encoding="utf-8") as f:
        f.write(f"{os.getpid()} {time.time()}\n")  # a test counts server starts per run
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
