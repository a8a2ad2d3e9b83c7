"""The tablet web page: ``GET /`` (the page) and ``/static/...`` (its assets), no token.

Everything the page needs ships inside this package (``rae_tablet_api/web``), including
the QR decoder, so it works on a plant network with no internet. The page asks for the
API token once and keeps it in the browser's localStorage; the API calls carry it.
"""

from __future__ import annotations

from pathlib import Path

from litestar import MediaType, Response, get
from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

# Only this node's own scripts, styles and API; camera/microphone streams are blob: URLs.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob: mediastream:; connect-src 'self' ws: wss:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
# Camera and microphone may be used by this page itself, nothing else.
PERMISSIONS = "camera=(self), microphone=(self)"


@get("/", media_type=MediaType.HTML, sync_to_thread=False, include_in_schema=False,
     cache_control=CacheControlHeader(no_cache=True))
def index() -> Response[bytes]:
    """The single-page tablet app."""
    return Response(
        (WEB_DIR / "index.html").read_bytes(),
        media_type=MediaType.HTML,
        headers={"Content-Security-Policy": CSP, "Permissions-Policy": PERMISSIONS,
                 "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"},
    )


# no-cache: a tablet revalidates (cheap ETag check) so a node upgrade reaches it at once.
static = create_static_files_router(
    path="/static", directories=[WEB_DIR], name="static", include_in_schema=False,
    cache_control=CacheControlHeader(no_cache=True),
)

ROUTES = [index, static]
