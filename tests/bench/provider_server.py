"""A local OpenAI-compatible provider with a rate limit, for the batch benchmark and tests.

    python tests/bench/provider_server.py --rpm 1200 --latency 0.3 \
        --answers examples/responses/refund_granted.jsonl [--port 0] [--error-every N]

`POST /v1/chat/completions` answers like OpenAI's chat completions API: after `--latency`
seconds, with a JSON message for the node the request is for. flowrun names a node's structured
output schema `<node>_output` (`response_format.json_schema.name`); the answer is that node's
`content` in the `--answers` file (flowrun's recorded-responses JSONL), else the smallest value
the requested JSON Schema accepts. Usage is counted as about 4 characters a token.

The rate limit is a token bucket of `--rpm` requests a minute that holds at most one second's
worth (`rpm / 60`, at least 1): a request that finds it empty is answered at once with 429 and
`Retry-After` (whole seconds, rounded up), `retry-after-ms` (exact) and OpenAI's
`x-ratelimit-*` headers; only accepted requests take a token. `--error-every N` answers every
Nth accepted request with 503 and `Retry-After` instead (a provider's transient failure).

`GET /stats` gives what the server saw: requests accepted (by node), answered 429 or 503, and
the monotonic times of the first and last accepted request; `POST /reset` zeroes them (not
the bucket). On start-up the server prints
`listening on http://127.0.0.1:PORT` on stdout (with `--port 0`, a free port).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


class Bucket:
    """`rpm` requests a minute, at most `capacity` at once after a pause."""

    def __init__(self, rpm: float, capacity: float | None = None) -> None:
        self.rate = rpm / 60.0
        self.capacity = capacity if capacity is not None else max(1.0, self.rate)
        self.tokens = self.capacity
        self.at = time.monotonic()

    def take(self) -> float | None:
        """None when a token was taken, else the seconds until one is there."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return (1.0 - self.tokens) / self.rate


def smallest(schema: Any) -> Any:
    """The simplest value a (flowrun-sized) JSON Schema accepts."""
    if not isinstance(schema, dict):
        return None
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return smallest(schema[key][0])
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: smallest(props.get(k, {})) for k in schema.get("required", list(props))}
    if kind == "array":
        return [smallest(schema.get("items", {})) for _ in range(schema.get("minItems", 0))]
    if kind == "string":
        return "x" * max(int(schema.get("minLength", 1)), 1)
    if kind in ("number", "integer"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        return int(low) + (1 if "exclusiveMinimum" in schema else 0)
    if kind == "boolean":
        return False
    return None


def load_answers(path: str | None) -> dict[str, str]:
    """node -> the answer's text, from a recorded-responses JSONL (the first entry per node)."""
    out: dict[str, str] = {}
    if path is None:
        return out
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        if not raw.strip():
            continue
        entry = json.loads(raw)
        content = entry.get("content")
        if entry.get("node") and content is not None and entry["node"] not in out:
            out[entry["node"]] = content if isinstance(content, str) else json.dumps(content)
    return out


def _schema_of(body: dict[str, Any]) -> tuple[str | None, Any]:
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        return spec.get("name"), spec.get("schema")
    if fmt.get("type") == "json_object":
        return None, fmt.get("schema")
    return None, None


def make_app(
    *, rpm: float, latency: float, answers: dict[str, str], error_every: int = 0
) -> Starlette:
    bucket = Bucket(rpm)
    stats: dict[str, Any] = {
        "accepted": 0,
        "limited": 0,
        "errors": 0,
        "by_node": Counter(),
        "first_at": None,
        "last_at": None,
    }

    async def completions(request: Request) -> JSONResponse:
        body = await request.json()
        wait = bucket.take()
        if wait is not None:
            stats["limited"] += 1
            return JSONResponse(
                {
                    "error": {
                        "message": f"Rate limit reached: {rpm:g} requests per minute. "
                        f"Please try again in {wait * 1000:.0f}ms.",
                        "type": "requests",
                        "code": "rate_limit_exceeded",
                    }
                },
                status_code=429,
                headers={
                    "retry-after": str(max(1, math.ceil(wait))),
                    "retry-after-ms": f"{wait * 1000:.0f}",
                    "x-ratelimit-limit-requests": f"{rpm:g}",
                    "x-ratelimit-remaining-requests": "0",
                    "x-ratelimit-reset-requests": f"{wait:.3f}s",
                },
            )
        stats["accepted"] += 1
        now = time.monotonic()
        stats["first_at"] = stats["first_at"] or now
        stats["last_at"] = now
        if error_every and stats["accepted"] % error_every == 0:
            stats["errors"] += 1
            return JSONResponse(
                {"error": {"message": "The server is overloaded.", "type": "server_error"}},
                status_code=503,
                headers={"retry-after": "1", "retry-after-ms": "50"},
            )
        name, schema = _schema_of(body)
        node = name.removesuffix("_output") if name else None
        stats["by_node"][node or "-"] += 1
        text = answers.get(node or "") if node else None
        if text is None:
            text = json.dumps(smallest(schema)) if schema is not None else "ok"
        await asyncio.sleep(latency)
        prompt = sum(len(str(m.get("content", ""))) for m in body.get("messages", [])) // 4 + 1
        completion = len(text) // 4 + 1
        return JSONResponse(
            {
                "id": f"chatcmpl-{stats['accepted']}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "local"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            }
        )

    async def get_stats(request: Request) -> JSONResponse:
        return JSONResponse({**stats, "by_node": dict(stats["by_node"])})

    async def reset(request: Request) -> JSONResponse:
        stats.update(accepted=0, limited=0, errors=0, by_node=Counter())
        stats.update(first_at=None, last_at=None)
        return JSONResponse({"reset": True})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/stats", get_stats, methods=["GET"]),
            Route("/reset", reset, methods=["POST"]),
        ]
    )


def main() -> None:
    import uvicorn

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rpm", type=float, default=1200, help="requests a minute")
    ap.add_argument("--latency", type=float, default=0.3, help="seconds per answer")
    ap.add_argument("--answers", help="recorded responses (JSONL) to answer nodes with")
    ap.add_argument("--port", type=int, default=0, help="0: a free port")
    ap.add_argument("--error-every", type=int, default=0, help="503 every Nth accepted request")
    args = ap.parse_args()
    sock = socket.socket()
    sock.bind(("127.0.0.1", args.port))
    sock.listen(1024)  # connections queue from here, before the loop serves them
    app = make_app(
        rpm=args.rpm,
        latency=args.latency,
        answers=load_answers(args.answers),
        error_every=args.error_every,
    )
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    sys.stdout.flush()
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
