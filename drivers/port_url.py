"""Ports given as URLs with options (`emu://?seed=3&rows=8`, `arc2://0?array=passive`)."""

from __future__ import annotations

from urllib.parse import SplitResult, parse_qs, urlsplit

from imssa_hw.errors import BadInput


def split_port_url(url: str, scheme: str, known: tuple[str, ...]
                   ) -> tuple[SplitResult, dict[str, list[str]]]:
    """The parts of a `scheme://` URL and its options (each a list of the values given);
    BadInput for another scheme or an option not in `known`."""
    parts = urlsplit(url)
    if parts.scheme != scheme:
        raise BadInput(f"expected a {scheme}:// port, got {url!r}")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - set(known))
    if unknown:
        raise BadInput(f"{url}: unknown {scheme}:// option(s) {', '.join(unknown)}; known: "
                       f"{', '.join(known)}")
    return parts, query
