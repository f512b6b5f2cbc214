"""Built folders served over HTTP with validators: weak ETag, Last-Modified and 304 Not Modified.

The web app mounts the feeds, the archive and the static assets through `Files`; `not_modified`
is the one conditional-GET rule (RFC 9110: If-None-Match, weakly compared, wins over
If-Modified-Since).
"""

from __future__ import annotations

import os
from email.utils import parsedate_to_datetime

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.staticfiles import NotModifiedResponse, StaticFiles
from starlette.types import Scope

from publisher.feedformats import FORMAT_BY_FILENAME


class Files(StaticFiles):
    """A built directory (feeds, archive) with validators: weak ETag, Last-Modified, 304.

    The ETag is weak because gzip may change the bytes on the way out. A directory that does
    not exist yet (nothing built) serves 404s instead of failing.
    """

    def __init__(self, directory: os.PathLike, cache_control: str) -> None:
        super().__init__(directory=directory, html=True, check_dir=False)
        self.cache_control = cache_control

    async def check_config(self) -> None:
        return None

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if isinstance(response, RedirectResponse):  # a directory without its slash: same host, path only
            return RedirectResponse(scope["path"] + "/", status_code=307)
        return response

    def file_response(
        self, full_path: str | os.PathLike[str], stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        fmt = FORMAT_BY_FILENAME.get(os.path.basename(full_path))
        media_type = fmt.content_type if fmt else None
        response = FileResponse(full_path, status_code=status_code, stat_result=stat_result, media_type=media_type)
        response.headers["etag"] = "W/" + response.headers["etag"]
        response.headers["cache-control"] = self.cache_control
        if status_code == 200 and not_modified(response.headers, Headers(scope=scope)):
            unchanged = NotModifiedResponse(response.headers)
            unchanged.headers["vary"] = "Accept-Encoding"  # as on the 200 (GZipMiddleware skips empty bodies)
            return unchanged
        return response


def not_modified(response: Headers | MutableHeaders, request: Headers) -> bool:
    """If-None-Match (weak comparison) wins over If-Modified-Since, as RFC 9110 says."""
    if if_none_match := request.get("if-none-match"):
        ours = response["etag"].removeprefix("W/")
        tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
        return if_none_match.strip() == "*" or ours in tags
    try:
        since = parsedate_to_datetime(request["if-modified-since"])
        return parsedate_to_datetime(response["last-modified"]) <= since
    except (KeyError, TypeError, ValueError):
        return False
