"""The installable tablet app's service worker: ``GET /sw.js``, at the root so that its
scope is the whole page (the manifest is a plain asset, ``/static/manifest.webmanifest``);
no token. It lives in ``rae_tablet_api/web`` beside the page; ``sw.js`` says what it does
(offline briefings, the queue of writes sent once when the node is back)."""

from __future__ import annotations

from litestar import Response, get
from litestar.datastructures import CacheControlHeader

from rae_tablet_api.routes.web import WEB_DIR


@get("/sw.js", sync_to_thread=False, include_in_schema=False,
      cache_control=CacheControlHeader(no_cache=True))
def service_worker() -> Response[bytes]:
    # no-cache: the browser checks for a new worker on every load (a node upgrade).
    return Response((WEB_DIR / "sw.js").read_bytes(), media_type="text/javascript",
                    headers={"Service-Worker-Allowed": "/", "X-Content-Type-Options": "nosniff"})


ROUTES = [service_worker]
