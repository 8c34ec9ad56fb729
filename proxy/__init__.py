"""taxmeter: an inference proxy that measures the latency tax of AI safety filters.

Its folders, top to bottom. A module imports from its own folder and from
folders on lower lines only, never from a folder on its own line or above
(tests/test_layout.py reads every import and checks it)::

    __main__          ``python -m proxy``
    cli               the command line: parse it, dispatch
    commands, sim     the offline commands (report, evaluate, calibrate); the simulated model server
    server            listeners, the wire clock, client limits, app wiring, workers
    exchange          one request's way through, top-down in exchange/handler.py
    control           the live config, variants, the admin API
    judge, upstream   the filter chain and the stream judge; the HTTP/1.1 client to the model server
    measure           the timeline (the one clock) and what derives from it: metrics, traces, logs
    surfaces          one adapter per API surface: where its text is, how it says no
    config            the config: its schema and checks, the routes, the built-in default
    formats           paths, JSON, gzip, server-sent events and the error body
    datasets          the packaged labelled prompts (data, no code)

``filters`` (beside this package) is the filter interface and the built-in
filters; it imports nothing from here.
"""
