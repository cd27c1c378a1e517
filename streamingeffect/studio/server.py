"""The studio's web server: the page, a JSON API per session, WebRTC signalling and a WebSocket.

    streamingeffect serve                      # http://127.0.0.1:7860, the bundled student

Every error is JSON ``{"error": message}`` with a status that says what went wrong; one session's
bad input never disturbs another session.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel

from streamingeffect.effects import UnknownEffectError, catalog, search_categories
from streamingeffect.effects.base import Category
from streamingeffect.io.images import decode_image, encode_image
from streamingeffect.pipeline import ModelBundle
from streamingeffect.runtime.stream import StreamError
from streamingeffect.studio.obs import add_obs_routes
from streamingeffect.studio.session import SessionManager, StudioConfig, StudioError, open_stream
from streamingeffect.studio.transport import (
    LatestQueue,
    answer_offer,
    use_loopback_ice,
)

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
FEATURED = (  # the first list a person sees, before typing
    "neon_outline_cyan",
    "glow_aura_gold",
    "fire_aura_orange",
    "hand_sparkles_gold",
    "hair_recolor_pink",
    "face_paint_blue",
    "cartoon_person",
    "sketch_pencil",
    "background_blur_strong",
)
MAX_WS_FRAME_BYTES = 4 * 1024 * 1024
UPLOAD_TYPES = ("PNG", "JPEG", "WEBP")


class EffectBody(BaseModel):
    effect: str


class SessionBody(BaseModel):
    effect: str | None = None


class OfferBody(BaseModel):
    sdp: str
    type: str


class RecordingBody(BaseModel):
    action: str


def effect_json(category: Category) -> dict[str, Any]:
    label = category.id.replace("_", " ")
    return {
        "id": category.id,
        "label": label[:1].upper() + label[1:],
        "description": category.descriptions[0],
        "kind": category.kind,
        "region": category.region,
    }


def find_effects(query: str, limit: int) -> list[Category]:
    """Ids that contain the text first, then the categories sharing the most words with it."""
    text = query.strip().lower()
    everything = catalog()
    if not text:
        by_id = {c.id: c for c in everything}
        featured = [by_id[i] for i in FEATURED if i in by_id]
        return (featured + [c for c in everything if c not in featured])[:limit]
    found = [c for c in everything if text.replace(" ", "_") in c.id]
    found += [c for c in search_categories(text, k=limit) if c not in found]
    return found[:limit]


def png_data_url(image: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(encode_image(image, ".png")).decode()


def read_upload(data: bytes, limit: int) -> np.ndarray:
    """The uploaded edited keyframe as RGB uint8, or a StudioError that says what is wrong with it."""
    if len(data) > limit:
        raise StudioError(
            f"the image is {len(data) / 2**20:.1f} MB; the limit is {limit / 2**20:.0f} MB", 413
        )
    if not data:
        raise StudioError("the upload is empty: choose an image file", 400)
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in UPLOAD_TYPES:
                raise StudioError(f"{image.format} images are not accepted: use PNG, JPEG or WebP", 415)
            return np.asarray(image.convert("RGB"))
    except UnidentifiedImageError as error:
        raise StudioError("the upload is not an image: choose a PNG, JPEG or WebP file", 415) from error
    except Image.DecompressionBombError as error:
        raise StudioError(f"the image has too many pixels: {error}", 413) from error
    except (OSError, SyntaxError) as error:  # a truncated or corrupt file of a known format
        raise StudioError(f"the image file is damaged: {error}", 415) from error


def warm_up(model: ModelBundle, config: StudioConfig, done: threading.Event) -> None:
    """Load what a first frame needs (the text encoder, MediaPipe, torch's kernels) while the page
    opens, so the first session does not wait seconds for it."""
    try:
        stream = open_stream(model, config)
        try:
            stream.set_effect(config.default_effect)
            stream.warmup((360, 640))
        finally:
            stream.close()
    except Exception:  # a failed warm-up only costs the first session that time
        log.exception("warm-up failed")
    finally:
        done.set()


def create_app(config: StudioConfig | None = None, model: ModelBundle | None = None) -> FastAPI:
    """The studio app; ``model`` (a loaded student) is shared by all sessions."""
    config = config or StudioConfig()
    if config.ice == "loopback":
        use_loopback_ice()
    if model is None:
        model = ModelBundle.load(config.model)
    manager = SessionManager(model, config)
    warm = threading.Event()

    async def reap_idle() -> None:
        while True:
            await asyncio.sleep(min(5.0, config.idle_timeout_s / 2, config.reconnect_grace_s / 2))
            for session_id in manager.idle():
                log.info("session %s is idle or disconnected: closing it", session_id)
                try:
                    await close_session(session_id)
                except Exception:  # the reaper must outlive any one session's trouble
                    log.exception("closing session %s failed", session_id)

    async def close_session(session_id: str) -> None:
        session = manager.sessions.get(session_id)
        if session is not None and session.peer is not None:
            with contextlib.suppress(Exception):
                await session.peer.close()
        await asyncio.to_thread(manager.close, session_id)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        reaper = asyncio.create_task(reap_idle())
        warming = threading.Thread(target=warm_up, args=(model, config, warm), name="warm-up", daemon=True)
        warming.start()
        yield
        reaper.cancel()
        for session_id in list(manager.sessions):
            await close_session(session_id)
        manager.shutdown()

    app = FastAPI(title="StreamingEffect studio", lifespan=lifespan)
    app.state.manager = manager
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    add_obs_routes(app, manager, STATIC / "obs.html")  # /obs/SESSION: the output alone, for OBS

    @app.exception_handler(StudioError)
    async def studio_error(request: Request, error: StudioError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        return JSONResponse({"error": f"malformed request: {problems}"}, status_code=400)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        return {
            "model": config.model,
            "max_sessions": config.max_sessions,
            "sessions": len(manager.sessions),
            "idle_timeout_s": config.idle_timeout_s,
            "transports": ["webrtc", "websocket"],
            "default_effect": config.default_effect,
            "warm": warm.is_set(),  # what a first frame needs is loaded
            "capture_size": [640, 480],
        }

    @app.get("/api/effects")
    def effects(q: str = "", limit: int = 12) -> dict[str, Any]:
        return {"effects": [effect_json(c) for c in find_effects(q, max(1, min(limit, 100)))]}

    @app.post("/api/sessions", status_code=201)
    def create_session(body: SessionBody | None = None) -> dict[str, Any]:
        try:
            session = manager.create(body.effect if body else None)
        except (StreamError, UnknownEffectError) as error:
            raise StudioError(str(error)) from error
        return {"session": session.id, "effect": session.stats()["effect"]}

    @app.post("/api/sessions/{session_id}/close", status_code=204)
    async def close_beacon(session_id: str) -> Response:
        await close_session(session_id)
        return Response(status_code=204)

    @app.delete("/api/sessions/{session_id}", status_code=204)
    async def delete_session(session_id: str) -> Response:
        manager.get(session_id)
        await close_session(session_id)
        return Response(status_code=204)

    @app.post("/api/sessions/{session_id}/effect")
    def set_effect(session_id: str, body: EffectBody) -> dict[str, Any]:
        session = manager.get(session_id)
        try:
            return {"effect": session.set_effect(body.effect)}
        except (StreamError, UnknownEffectError) as error:
            raise StudioError(str(error)) from error

    @app.post("/api/sessions/{session_id}/capture")
    def capture(session_id: str) -> dict[str, Any]:
        image, person = manager.get(session_id).capture()
        mask = (np.clip(person, 0, 1) * 255).round().astype(np.uint8)
        return {
            "image": png_data_url(image),
            "mask": png_data_url(mask),
            "width": image.shape[1],
            "height": image.shape[0],
        }

    @app.post("/api/sessions/{session_id}/keyframe")
    def set_keyframe(session_id: str, image: Annotated[UploadFile, File()]) -> dict[str, Any]:
        session = manager.get(session_id)
        edited = read_upload(image.file.read(config.max_upload_bytes + 1), config.max_upload_bytes)
        try:
            session.set_keyframe(edited)
        except StreamError as error:
            raise StudioError(str(error)) from error
        return {"keyframe": True}

    @app.delete("/api/sessions/{session_id}/keyframe")
    def clear_keyframe(session_id: str) -> dict[str, Any]:
        manager.get(session_id).clear_keyframe()
        return {"keyframe": False}

    @app.get("/api/sessions/{session_id}/stats")
    def stats(session_id: str) -> dict[str, Any]:
        return manager.get(session_id).stats()

    @app.post("/api/sessions/{session_id}/recording")
    def recording(session_id: str, body: RecordingBody) -> dict[str, Any]:
        session = manager.get(session_id)
        if body.action == "start":
            session.start_recording()
            return {"recording": True}
        if body.action != "stop":
            raise StudioError(f"action must be 'start' or 'stop', not {body.action!r}")
        stopped = session.stop_recording()
        if stopped is None:
            raise StudioError("not recording", 409)
        name, recorder = stopped
        url = f"/api/sessions/{session_id}/recordings/{name}"
        return {"recording": False, "url": url, "frames": recorder.written, "seconds": recorder.seconds}

    @app.get("/api/sessions/{session_id}/recordings/{name}")
    def download(session_id: str, name: str) -> FileResponse:
        path = manager.get(session_id).recordings.get(name)
        if path is None or not path.exists():
            raise StudioError(f"no recording {name!r} in this session", 404)
        return FileResponse(path, media_type="video/mp4", filename=name)

    @app.post("/api/sessions/{session_id}/offer")
    async def offer(session_id: str, body: OfferBody) -> dict[str, str]:
        session = manager.get(session_id)
        if body.type != "offer":
            raise StudioError(f"expected an SDP offer, got type {body.type!r}")
        try:
            sdp, kind = await answer_offer(session, body.sdp, body.type)
        except ValueError as error:  # aiortc's complaint about a malformed SDP, or no video in it
            raise StudioError(f"bad WebRTC offer: {error}") from error
        return {"sdp": sdp, "type": kind}

    @app.websocket("/api/sessions/{session_id}/ws")
    async def frames_socket(websocket: WebSocket, session_id: str) -> None:
        session = manager.sessions.get(session_id)
        if session is None:
            await websocket.close(code=4404, reason="no such session")
            return
        await websocket.accept()
        session.attach("websocket")
        outputs = LatestQueue(asyncio.get_running_loop())
        remove_listener = session.add_listener(outputs.put_threadsafe)

        async def send_outputs() -> None:
            while True:
                image = await outputs.get()
                await websocket.send_bytes(await asyncio.to_thread(encode_image, image))

        sender = asyncio.create_task(send_outputs())
        try:
            await receive_frames(websocket, session)
        except WebSocketDisconnect:
            pass
        finally:
            remove_listener()
            sender.cancel()
            session.detach("websocket")

    async def receive_frames(websocket: WebSocket, session: Any) -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            data = message.get("bytes")
            if data is None:
                await send_error(websocket, "send camera frames as binary messages, one JPEG each")
                continue
            if len(data) > MAX_WS_FRAME_BYTES:
                await send_error(websocket, f"a frame of {len(data)} bytes is too large")
                continue
            image = await asyncio.to_thread(decode_image, data)
            if image is None:
                await send_error(websocket, "a frame that is not a JPEG image was skipped")
                continue
            session.submit(image)

    async def send_error(websocket: WebSocket, message: str) -> None:
        await websocket.send_text(json.dumps({"type": "error", "error": message}))

    return app


def serve(config: StudioConfig, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Run the studio until Ctrl-C."""
    import uvicorn

    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "serving on %s: anyone who reaches this address can use the studio (there is no login), and "
            "browsers only give the camera to https pages or localhost",
            host,
        )
    app = create_app(config)
    print(f"StreamingEffect studio: http://{'localhost' if host == '127.0.0.1' else host}:{port}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
