"""The lab's ASGI app (Starlette): the page, its static files, the component choices and the training websocket.

Routes: GET / (page.html), GET /static/{lab.js, lab.css} (shipped in the package: the page needs no network),
GET /api/components (what the page may choose, from the registries: protocol.components), websocket /ws (one
`LabSession` per connection; every message checked by protocol.parse_message, a bad one answered with
{"type": "error"} while the connection stays open). `serve()` runs it with uvicorn, on 127.0.0.1 by default.
"""
from __future__ import annotations

import json
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from .protocol import MAX_MESSAGE_CHARS, ProtocolError, components, parse_message
from .session import LabSession

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
WS_MAX_SIZE = 64 * 2 ** 20  # bytes of one websocket message: larger than any valid one, so too many points get an error


def create_app(runs_dir: str | Path = "runs/lab") -> Starlette:
    """The lab app; saved sessions go to `runs_dir`/NAME. `app.state.sessions` holds the live sessions."""

    async def page(request: Request) -> Response:
        return FileResponse(HERE / "page.html", media_type="text/html")

    async def favicon(request: Request) -> Response:
        return Response(status_code=204)  # no icon; answered so the browser logs no error

    async def api_components(request: Request) -> Response:
        return JSONResponse(components())

    async def socket(ws: WebSocket) -> None:
        await ws.accept()

        async def send(msg: dict) -> None:
            await ws.send_text(json.dumps(msg, allow_nan=False, default=_jsonable))

        session = LabSession(send, app.state.runs_dir)
        app.state.sessions.add(session)
        try:
            await send({"type": "hello", "limits": {"max_message_chars": MAX_MESSAGE_CHARS}})
            while True:
                text = await _receive(ws)
                try:
                    msg = parse_message(text)
                except ProtocolError as e:
                    await session.error(str(e))
                    continue
                await session.handle(msg)
        except WebSocketDisconnect:
            pass
        finally:  # also when the connection's task is cancelled: stop() needs no await
            app.state.sessions.discard(session)
            session.stop()
            await session.close()

    app = Starlette(routes=[
        Route("/", page),
        Route("/favicon.ico", favicon),
        Route("/api/components", api_components),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        WebSocketRoute("/ws", socket),
    ])
    app.state.runs_dir = Path(runs_dir)
    app.state.sessions = set()
    return app


async def _receive(ws: WebSocket) -> str | bytes:
    """The next text or binary message; WebSocketDisconnect when the page goes away."""
    message = await ws.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    return message.get("text") if message.get("text") is not None else (message.get("bytes") or b"")


def _jsonable(value):
    """Numbers torch or numpy hand back (0-d tensors, numpy scalars) as plain floats."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def serve(host: str = "127.0.0.1", port: int = 8765, runs_dir: str | Path = "runs/lab") -> None:
    """Run the lab with uvicorn until interrupted (websocket messages up to the protocol's size limit)."""
    import uvicorn

    uvicorn.run(create_app(runs_dir), host=host, port=port, log_level="warning", ws_max_size=WS_MAX_SIZE)
