"""A URL as taxmeter shows it (the start-up lines, /readyz, logs): never its secrets.

An upstream URL may carry credentials (``http://user:key@host``) or a key in
its query; what is printed or served to whoever scrapes /readyz keeps neither.
"""

from __future__ import annotations

from yarl import URL


def shown_url(url: str) -> str:
    """``url`` without its user, password, query and fragment."""
    return str(URL(url).with_user(None).with_query(None).with_fragment(None))
