"""Where the time went: the request timeline (the one clock), and what is
derived from it at a request's end: metrics, traces, the access log, /stats."""
