"""What bodies and streams are made of: JSON read exactly and written in
pieces, gzip and deflate, server-sent events, and the error body."""
