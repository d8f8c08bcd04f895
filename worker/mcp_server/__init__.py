"""plangate's MCP server: the API's job and review operations as MCP tools (official `mcp` SDK), over
streamable HTTP at /mcp on `plangate serve` and over stdio (`plangate mcp`)."""
