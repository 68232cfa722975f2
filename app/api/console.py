"""The web console: `/` and its static files under `/console/`, outside the OpenAPI contract.

The files are plain HTML/CSS/JS modules shipped inside the package (no build step, no CDN: the
service runs air-gapped). They hold no data, so they are served without an API key; every call
the console makes to the API carries the key the user entered.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

WEB_DIR = Path(__file__).resolve().parents[1] / "web"
STATIC_PREFIX = "/console"

# Everything from this origin, nothing from elsewhere: a stray CDN link fails loudly in the
# browser, and thumbnails are blob: URLs made from authenticated fetches.
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

router = APIRouter(include_in_schema=False)


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def console_page() -> FileResponse:
    # no-cache: revalidate (ETag) so a new release's page and scripts are picked up at once.
    return FileResponse(
        WEB_DIR / "index.html",
        media_type="text/html",
        headers={"Cache-Control": "no-cache", "Content-Security-Policy": CSP},
    )


class ConsoleFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.setdefault("Cache-Control", "no-cache")
        return response


def install_console(app: FastAPI) -> None:
    app.include_router(router)
    app.mount(STATIC_PREFIX, ConsoleFiles(directory=WEB_DIR), name="console")
