"""No ``Server`` header of the proxy's own: the model server's passes through, or there is none.

aiohttp gives every response that has no ``Server`` header its own,
``Python/3.11 aiohttp/3.x.y`` (``headers.setdefault`` while it prepares the
head), which tells anyone who asks the exact versions to look up, on the
proxy's own errors too. The model server's header is end-to-end and is
copied into proxied answers (proxy.exchange.headers); only aiohttp's default must go.

Every request on every listener is an :class:`AnonymousRequest` (made so in
proxy.server.wire). aiohttp calls its prepare hook for every response, the proxy's
own errors and the parser's 400s included, after the defaults are set and
before the head is serialized; there it takes aiohttp's value out again. The
value is recognised by identity, not by equality, so a model server that
sends the same string (one built on aiohttp) keeps its header.
"""

from __future__ import annotations

from aiohttp import hdrs, web
from aiohttp.http import SERVER_SOFTWARE


class AnonymousRequest(web.Request):
    """aiohttp's request; its responses carry no ``Server`` header that aiohttp made up."""

    async def _prepare_hook(self, response: web.StreamResponse) -> None:
        headers = response.headers
        if headers.get(hdrs.SERVER) is SERVER_SOFTWARE:
            del headers[hdrs.SERVER]
        await super()._prepare_hook(response)
