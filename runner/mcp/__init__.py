"""MCP both ways: tools from MCP servers as governed tool nodes, and workflows served as MCP tools.

- lock.py: the lock file next to a spec (schemas and annotations of the MCP tools it uses),
  read by the compiler so that `validate` stays offline.
- contracts.py: an MCP tool contract resolved from the lock (effect, idempotency, trust, schemas).
- pool.py: the servers of one run, started on first use, reused, stopped when the run ends.
- client.py: connecting to a server (stdio or streamable HTTP) through the `mcp` SDK.
- serve.py: `flowrun mcp serve`, each workflow as one MCP tool.

Nothing here imports the `mcp` SDK at module level: validating a spec never loads it.
"""
