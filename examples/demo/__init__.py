"""The demo MCP server (fault lab): ``python -m examples.demo serve`` and ``python -m examples.demo inject``."""
