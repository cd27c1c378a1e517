"""The two ways frames travel between the page and a session: WebRTC (aiortc) and a WebSocket of JPEGs.

WebRTC: the browser sends its camera as a video track; the server answers on the same connection
with a track of processed frames. The WebSocket fallback carries one JPEG per binary message both
ways, for browsers or networks where WebRTC does not connect. Both hand camera frames to
`StudioSession.submit` (newest wins) and send outputs as they come, never a backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import time
from typing import Any

import numpy as np

from streamingeffect.studio.session import StudioSession

log = logging.getLogger(__name__)

VIDEO_CLOCK = 90_000  # RTP's video clock rate (Hz)


class LatestQueue:
    """An asyncio queue of size one that keeps the newest item; fed from any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1)

    def _put(self, item: Any) -> None:
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(item)

    def put_threadsafe(self, item: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closing: nobody waits any more
            self._loop.call_soon_threadsafe(self._put, item)

    async def get(self) -> Any:
        return await self._queue.get()


def use_loopback_ice() -> None:
    """Gather ICE candidates on 127.0.0.1 only. The studio binds to localhost by default and the
    browser runs on the same machine, so the media never needs another interface."""
    from aioice import ice

    ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else []


def processed_track_class() -> type:
    from aiortc import MediaStreamTrack
    from av import VideoFrame

    class ProcessedTrack(MediaStreamTrack):
        """The session's outputs as a WebRTC video track, stamped with the time they were made."""

        kind = "video"

        def __init__(self, queue: LatestQueue):
            super().__init__()
            self._queue = queue
            self._start: float | None = None

        async def recv(self) -> VideoFrame:
            image: np.ndarray = await self._queue.get()
            now = time.monotonic()
            self._start = self._start if self._start is not None else now
            frame = VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = int((now - self._start) * VIDEO_CLOCK)
            frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
            return frame

    return ProcessedTrack


async def answer_offer(session: StudioSession, sdp: str, kind: str) -> tuple[str, str]:
    """Take the page's offer, wire its camera track into the session and the outputs back; -> answer."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError

    previous, session.peer = session.peer, None
    if previous is not None:
        await previous.close()
    peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    outputs = LatestQueue(asyncio.get_running_loop())
    remove_listener = session.add_listener(outputs.put_threadsafe)
    tasks: list[asyncio.Task[None]] = []

    async def pump(track: Any) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                session.submit(await track.recv())  # converted by the worker, only if it keeps it

    @peer.on("track")
    def on_track(track: Any) -> None:
        if track.kind == "video":
            peer.addTrack(processed_track_class()(outputs))
            tasks.append(asyncio.ensure_future(pump(track)))

    @peer.on("connectionstatechange")
    async def on_state() -> None:
        log.info("session %s: WebRTC %s", session.id, peer.connectionState)
        if peer.connectionState in ("failed", "closed"):
            remove_listener()
            for task in tasks:
                task.cancel()
            if session.peer is peer:
                session.detach("webrtc")

    try:
        await peer.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
        if not tasks:
            raise ValueError("the offer has no video track: the page must send its camera")
        await peer.setLocalDescription(await peer.createAnswer())
    except Exception as error:  # aiortc raises several kinds for a malformed SDP
        remove_listener()
        await peer.close()  # not the session's peer: closing it leaves the session as it was
        raise ValueError(str(error) or type(error).__name__) from error
    session.peer = peer
    session.attach("webrtc")
    return peer.localDescription.sdp, peer.localDescription.type
