"""What requests, bodies and streams are made of: a path's canonical spelling, JSON
read exactly and written in pieces, gzip and deflate, server-sent events, the error body."""
