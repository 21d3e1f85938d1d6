"""Route handlers, one module per resource: thin — a few checks beyond the body's Struct,
then a command to the profile (the gateway) or a use case, and the answer's shape."""
