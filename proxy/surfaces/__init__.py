"""The API surfaces the proxy judges, one module each, by route label.

Adding a surface: a module with a :class:`~proxy.surfaces.base.Surface`
subclass (and its stream codec), one line below, its paths in
:mod:`proxy.config.routes`. See docs/surfaces.md.
"""

from __future__ import annotations

from proxy.surfaces.base import Surface
from proxy.surfaces.chat import Chat
from proxy.surfaces.completions import Completions, Embeddings
from proxy.surfaces.messages import Messages
from proxy.surfaces.responses import Responses

SURFACES: dict[str, Surface] = {
    surface.label: surface
    for surface in (Chat(), Completions(), Embeddings(), Responses(), Messages())
}


def surface_for(label: str) -> Surface | None:
    """The surface of a route label; None for routes forwarded unjudged."""
    return SURFACES.get(label)
