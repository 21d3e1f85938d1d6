"""The HTTP server: hypercorn (trio worker) run from our own code, with what hypercorn
leaves undone mended per protocol (connections.py, http1.py, http2.py, streams.py), workers,
metrics and logs."""
