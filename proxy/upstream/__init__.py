"""The lean HTTP/1.1 client to the model server: one call, the pool, a
connection, an answer as it is read, and the ways a call fails."""
