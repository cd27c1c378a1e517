"""The studio's web server: the page, a JSON API per session, WebRTC signalling and a WebSocket.

    streamingeffect serve                      # http://127.0.0.1:7860, the bundled student

Every error is JSON ``{"error": message}`` with a status that says what went wrong; one session's
bad input never disturbs another session.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import io
import ipaddress
import json
import logging
import secrets
import socket
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from streamingeffect.effects import UnknownEffectError, catalog, search_categories
from streamingeffect.effects.base import Category
from streamingeffect.io.images import decode_image, encode_image
from streamingeffect.pipeline import ModelBundle
from streamingeffect.runtime.stream import StreamError
from streamingeffect.studio.guard import LOOPBACK_NAMES, GuardPolicy, StudioGuard
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


def check_pixels(width: int, height: int, limit: int, what: str = "the image") -> None:
    """Refuse an image whose header promises more pixels than ``limit``, before it is decoded: a
    small file can claim a huge size (a decompression bomb) and decoding it would take gigabytes."""
    if width * height > limit:
        raise StudioError(
            f"{what} is {width}x{height} ({width * height / 1e6:.0f} megapixels); the studio takes up to "
            f"{limit / 1e6:.1f} megapixels: scale it down",
            413,
        )


def check_prompt(text: str | None, limit: int) -> None:
    if text is not None and len(text) > limit:
        raise StudioError(f"the prompt is {len(text)} characters long; the studio takes up to {limit}", 400)


def read_upload(data: bytes, limit: int, max_pixels: int = 3840 * 2160) -> np.ndarray:
    """The uploaded edited keyframe as RGB uint8, or a StudioError that says what is wrong with it."""
    if len(data) > limit:
        raise StudioError(f"the image is over the limit of {limit / 2**20:.0f} MB", 413)
    if not data:
        raise StudioError("the upload is empty: choose an image file", 400)
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            if image.format not in UPLOAD_TYPES:
                raise StudioError(f"{image.format} images are not accepted: use PNG, JPEG or WebP", 415)
            check_pixels(image.width, image.height, max_pixels)
            return np.asarray(image.convert("RGB"))
    except UnidentifiedImageError as error:
        raise StudioError("the upload is not an image: choose a PNG, JPEG or WebP file", 415) from error
    except Image.DecompressionBombError as error:
        raise StudioError(f"the image has too many pixels: {error}", 413) from error
    except (OSError, SyntaxError) as error:  # a truncated or corrupt file of a known format
        raise StudioError(f"the image file is damaged: {error}", 415) from error


def decode_camera_frame(data: bytes, max_pixels: int) -> np.ndarray:
    """A WebSocket camera frame (one JPEG) as RGB uint8; StudioError when it is not a JPEG or its
    header claims more pixels than the studio takes (checked before any pixel is decoded)."""
    try:
        with Image.open(io.BytesIO(data)) as header:
            kind, width, height = header.format, header.width, header.height
    except Image.DecompressionBombError as error:  # Pillow's own limit, far above the studio's
        raise StudioError(f"a camera frame was skipped: it has too many pixels ({error})", 413) from error
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise StudioError("a frame that is not a JPEG image was skipped", 415) from error
    if kind != "JPEG":
        raise StudioError(f"a {kind} frame was skipped: send camera frames as JPEG", 415)
    check_pixels(width, height, max_pixels, "a camera frame")
    image = decode_image(data)
    if image is None:
        raise StudioError("a frame that is not a JPEG image was skipped", 415)
    return image


async def read_form_image(request: Request, limit: int) -> bytes:
    """The bytes of the multipart field ``image`` (at most limit + 1 of them)."""
    async with request.form(max_files=1, max_fields=8) as form:
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise StudioError("send the edited keyframe as a multipart form field named 'image'", 400)
        return await upload.read(limit + 1)


def http_message(request: Request, error: HTTPException) -> str:
    """FastAPI's own refusals (unknown path, wrong method, a body it could not parse) in words."""
    if error.status_code == 404:
        return f"nothing here: {request.url.path} is not a studio address"
    if error.status_code == 405:
        return f"{request.method} is not allowed on {request.url.path}"
    return str(error.detail)


def validation_response(error: RequestValidationError) -> JSONResponse:
    """400 for a body that is not JSON at all, 422 for JSON of the wrong shape; always {"error"}."""
    problems = error.errors()
    if any(problem["type"] == "json_invalid" for problem in problems):
        return JSONResponse({"error": "malformed JSON in the request body"}, status_code=400)
    text = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in problems)
    return JSONResponse({"error": f"malformed request: {text}"}, status_code=422)


def guard_policy(config: StudioConfig) -> GuardPolicy:
    hosts = None if config.allowed_hosts is None else frozenset(h.lower() for h in config.allowed_hosts)
    return GuardPolicy(hosts, config.token, config.max_body_bytes, config.max_upload_bytes)


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
    app.add_middleware(StudioGuard, policy=guard_policy(config))

    @app.exception_handler(StudioError)
    async def studio_error(request: Request, error: StudioError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, error: RequestValidationError) -> JSONResponse:
        return validation_response(error)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": http_message(request, error)}, status_code=error.status_code, headers=error.headers
        )

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=error)
        return JSONResponse({"error": f"internal error ({type(error).__name__}); see the server's log"}, 500)

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
    def effects(q: Annotated[str, Query(max_length=200)] = "", limit: int = 12) -> dict[str, Any]:
        return {"effects": [effect_json(c) for c in find_effects(q, max(1, min(limit, 100)))]}

    @app.post("/api/sessions", status_code=201)
    def create_session(body: SessionBody | None = None) -> dict[str, Any]:
        check_prompt(body.effect if body else None, config.max_prompt_chars)
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
        check_prompt(body.effect, config.max_prompt_chars)
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
    async def set_keyframe(session_id: str, request: Request) -> dict[str, Any]:
        session = manager.get(session_id)  # the session and its captured frame, before the body
        session.require_capture()
        data = await read_form_image(request, config.max_upload_bytes)
        edited = await asyncio.to_thread(read_upload, data, config.max_upload_bytes, config.max_image_pixels)
        try:
            await asyncio.to_thread(session.set_keyframe, edited)
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
            try:
                image = await asyncio.to_thread(decode_camera_frame, data, config.max_image_pixels)
            except StudioError as error:
                await send_error(websocket, str(error))
                continue
            session.submit(image)

    async def send_error(websocket: WebSocket, message: str) -> None:
        await websocket.send_text(json.dumps({"type": "error", "error": message}))

    return app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name other than localhost may resolve anywhere
        return False


def secured(config: StudioConfig, host: str, allow_hosts: Sequence[str] = ()) -> StudioConfig:
    """The names the studio answers to (the bound host, localhost, --allow-host; any name when bound
    to every interface) and an access token wherever it is reachable from another machine."""
    names = [*LOOPBACK_NAMES, *allow_hosts]
    everywhere = host in ("0.0.0.0", "::", "")
    allowed = None if everywhere and not allow_hosts else tuple(names if everywhere else [*names, host])
    token = config.token or (None if is_loopback(host) else secrets.token_urlsafe(24))
    return dataclasses.replace(config, allowed_hosts=allowed, token=token)


def uvicorn_limits() -> dict[str, Any]:
    """Server-level limits: WebSocket messages no larger than a frame may be (uvicorn buffers up to
    16 MB by default before the app sees a byte)."""
    return {"ws_max_size": MAX_WS_FRAME_BYTES + 64 * 1024}


def studio_url(config: StudioConfig, host: str, port: int, tls: bool) -> str:
    name = "localhost" if is_loopback(host) else (socket.gethostname() if host in ("0.0.0.0", "::") else host)
    name = f"[{name}]" if ":" in name else name
    query = f"/?token={config.token}" if config.token else ""
    return f"{'https' if tls else 'http'}://{name}:{port}{query}"


def serve(
    config: StudioConfig,
    host: str = "127.0.0.1",
    port: int = 7860,
    *,
    allow_hosts: Sequence[str] = (),
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
) -> None:
    """Run the studio until Ctrl-C (docs/SECURITY.md: what it protects against and how)."""
    import uvicorn

    if bool(ssl_certfile) != bool(ssl_keyfile):
        raise ValueError("TLS needs both --ssl-certfile and --ssl-keyfile")
    config = secured(config, host, allow_hosts)
    if not is_loopback(host) and not ssl_certfile:
        log.warning(
            "serving on %s without TLS: browsers only give the camera to https pages or localhost; "
            "put a TLS proxy in front or pass --ssl-certfile/--ssl-keyfile (docs/SECURITY.md)",
            host,
        )
    app = create_app(config)
    print(f"StreamingEffect studio: {studio_url(config, host, port, bool(ssl_certfile))}", flush=True)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        **uvicorn_limits(),
    )
