"""Schemathesis hooks for qrupload's schema: tus PATCH bodies are raw bytes
(`application/offset+octet-stream`), which Schemathesis has no built-in serializer for."""
import schemathesis


@schemathesis.serializer("application/offset+octet-stream")
def offset_octet_stream(ctx, value):
    if isinstance(value, bytes):
        return value
    if value is None:
        return None
    return str(value).encode("utf-8")
