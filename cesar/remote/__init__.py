"""The client commands: `cesar submit` and `cesar remote ...` talk HTTP to a Cesar server."""
