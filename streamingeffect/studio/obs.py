"""The OBS view: an output-only page per studio session, for OBS's Browser Source (or any window).

    http://localhost:7860/obs/SESSION                        the processed video, nothing else
    http://localhost:7860/obs/SESSION?background=chroma      outside the person and the effect: key green
    http://localhost:7860/obs/SESSION?background=transparent the same, transparent (OBS keeps the alpha)

The page has no controls; it takes the session's outputs over a WebSocket (one JPEG, or a WebP with
alpha, per message; always the newest, never a backlog) and reconnects by itself. The matte keeps the
person and wherever the effect changed the picture (a glow around the person, sparkles in the air),
so effects that reach beyond the person survive keying.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any

import cv2
import numpy as np
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse

from streamingeffect.io.images import encode_image
from streamingeffect.studio.session import SessionManager, StudioSession
from streamingeffect.studio.transport import LatestQueue

BACKGROUNDS = ("none", "chroma", "transparent")
CHANGE_LEVEL = 24  # a pixel the effect moved by more than this (of 255, any channel) belongs to it
REACH = 0.08  # how far from the person (share of the frame's short side) the effect's changes are kept
NO_SESSION = 4404  # WebSocket close code: the session does not exist (or closed)


def matte(output: np.ndarray, source: np.ndarray, person: np.ndarray) -> np.ndarray:
    """[H, W] float alpha in 0..1: the person (soft) and what the effect changed near them (an outline,
    a glow), cleaned of specks. Changes far from the person are left out: a model that repaints a
    square around the person would otherwise keep the whole square.

    output, source: [H, W, 3] uint8 (the same frame with and without the effect); person: [H, W] 0..1.
    """
    changed = (np.abs(output.astype(np.int16) - source).max(axis=2) > CHANGE_LEVEL).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    changed = cv2.morphologyEx(changed, cv2.MORPH_OPEN, kernel)  # isolated specks are noise, not effect
    reach = max(3, round(REACH * min(person.shape)))
    near = cv2.dilate(
        (person > 0.5).astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1,) * 2)
    )
    changed = cv2.dilate(changed & near, kernel)
    soft = cv2.GaussianBlur(changed.astype(np.float32), (0, 0), 1.5)
    return np.maximum(np.clip(person, 0, 1), soft)


def view_frame(
    output: np.ndarray, parsed: tuple[np.ndarray, np.ndarray] | None, background: str, key: str
) -> bytes:
    """One message for the page: the output as JPEG, keyed onto ``key`` (RRGGBB), or WebP with alpha."""
    if background == "none" or parsed is None or parsed[0].shape != output.shape:
        return encode_image(output, ".jpg")
    alpha = matte(output, *parsed)[..., None]
    if background == "transparent":
        rgba = np.concatenate([output, np.round(alpha * 255).astype(np.uint8)], axis=2)
        return encode_image(rgba, ".webp", quality=85)
    color = np.array([int(key[i : i + 2], 16) for i in (0, 2, 4)], np.float32)
    keyed = output.astype(np.float32) * alpha + color * (1 - alpha)
    return encode_image(np.round(keyed).astype(np.uint8), ".jpg", quality=90)


def add_obs_routes(app: FastAPI, manager: SessionManager, page: Any) -> None:
    """The page route and its WebSocket; ``page`` is the path of obs.html."""

    @app.get("/obs/{session_id}", include_in_schema=False)
    def obs_page(session_id: str) -> FileResponse:
        return FileResponse(page)

    @app.websocket("/api/sessions/{session_id}/view")
    async def view_socket(
        websocket: WebSocket, session_id: str, background: str = "none", key: str = "00ff00"
    ) -> None:
        # Accepted before any refusal: a refused handshake would reach the page without its reason.
        await websocket.accept()
        session = manager.sessions.get(session_id)
        if session is None:
            await websocket.close(code=NO_SESSION, reason="no such session: open the studio first")
            return
        if background not in BACKGROUNDS or not re.fullmatch(r"[0-9a-fA-F]{6}", key):
            reason = f"background is one of {', '.join(BACKGROUNDS)}; key is a colour RRGGBB"
            await websocket.close(code=4400, reason=reason)
            return
        outputs = LatestQueue(asyncio.get_running_loop())

        def listener(image: np.ndarray) -> None:
            outputs.put_threadsafe((image, session.stream.last_parsed()))

        remove = session.add_listener(listener)
        try:
            await _send_views(websocket, session, outputs, background, key)
        except WebSocketDisconnect:
            pass
        finally:
            remove()

    async def _send_views(
        websocket: WebSocket, session: StudioSession, outputs: LatestQueue, background: str, key: str
    ) -> None:
        while not session.closed:
            try:
                # The listener runs on the session's worker right after the push, so the last parsed
                # frame is the one this output was made from (the newest of its chunk).
                image, parsed = await asyncio.wait_for(outputs.get(), timeout=2.0)
            except TimeoutError:
                continue  # no frame for a while: check the session is still there
            await websocket.send_bytes(await asyncio.to_thread(view_frame, image, parsed, background, key))
        with contextlib.suppress(RuntimeError):
            await websocket.close(code=NO_SESSION, reason="the session closed")
