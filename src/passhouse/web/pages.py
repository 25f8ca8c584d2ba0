"""What every page a browser opens here (the dashboard, the share pages) has in common: its
security headers, and whether an error should be a page or the API's JSON."""

from __future__ import annotations

# Nothing is allowed unless a page names it; no page may be framed, post a form elsewhere
# or move its base URL.
_BASE_POLICY = {
    "default-src": "'none'",
    "form-action": "'none'",
    "frame-ancestors": "'none'",
    "base-uri": "'none'",
}


def security_headers(**sources: str) -> dict[str, str]:
    """The headers of a page that loads only `sources` (CSP directives as keywords:
    script_src="'self'" is `script-src 'self'`) and nothing else."""
    policy = {**_BASE_POLICY, **{name.replace("_", "-"): value for name, value in sources.items()}}
    return {
        "content-security-policy": "; ".join(f"{name} {value}" for name, value in policy.items()),
        "x-content-type-options": "nosniff",
        # A share link is the pass itself: it must not leak to another site as a Referer.
        "referrer-policy": "no-referrer",
        "cache-control": "no-cache",
    }


def prefers_html(accept: str) -> bool:
    """Whether an Accept header ranks text/html above application/json: a browser's does,
    while a client that asks for JSON, or takes anything (*/*), keeps the API's JSON."""
    return _quality(accept, "text/html") > _quality(accept, "application/json")


def _quality(accept: str, media_type: str) -> float:
    """RFC 9110 12.5.1: the q of the most specific range that matches `media_type`."""
    ranges = {media_type: 2, f"{media_type.split('/')[0]}/*": 1, "*/*": 0}
    best_specificity, best_q = -1, 0.0
    for item in accept.split(","):
        name, *params = (part.strip() for part in item.split(";"))
        specificity = ranges.get(name.lower())
        if specificity is None or specificity < best_specificity:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if not 0.0 <= q <= 1.0:
            q = 0.0
        if specificity > best_specificity or q > best_q:
            best_specificity, best_q = specificity, q
    return best_q
