"""`streamingeffect serve` in its own process on a free loopback port, with what attack tests need:
its memory (resident now, and the peak since a reset), the bytes it wrote, raw HTTP, and hostile
images that are small on disk but claim a huge size in their header."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from studio_helpers import call, free_port

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class LiveStudio:
    base: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    output: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def status(self, key: str) -> int:
        """A /proc/PID/status figure in bytes (VmRSS: resident now, VmHWM: the peak)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(key)

    def rss(self) -> int:
        return self.status("VmRSS")

    def written(self) -> int:
        """Bytes the server has passed to write() so far (files, pipes and sockets alike)."""
        for line in Path(f"/proc/{self.pid}/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
        raise KeyError("wchar")

    @contextlib.contextmanager
    def peak_growth(self) -> Iterator[list[int]]:
        """Yields a list that afterwards holds the peak resident memory above the start, in bytes:
        the kernel's own peak (reset at the start where allowed) and a 5 ms sampler, whichever is higher."""
        with contextlib.suppress(OSError):
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        start = self.rss()
        samples = [start]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                with contextlib.suppress(OSError, KeyError):
                    samples.append(self.rss())
                time.sleep(0.005)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        result: list[int] = []
        try:
            yield result
        finally:
            done.set()
            sampler.join()
            result.append(max(max(samples), self.status("VmHWM")) - start)


@contextlib.contextmanager
def live_studio(tmp: Path, *args: str) -> Iterator[LiveStudio]:
    """Run the studio with the bundled student until the block ends; waits until it is warm."""
    port = free_port()
    log = tmp / f"studio-{port}.log"
    command = [sys.executable, "-m", "streamingeffect.cli", "serve", "--port", str(port)]
    command += ["--recordings", str(tmp / f"recordings-{port}"), *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as sink:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    studio = LiveStudio(f"http://127.0.0.1:{port}", port, process, log)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the studio did not start:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                status, info = call(studio.base, "GET", "/api/info")
                if status == 200 and info["warm"]:
                    break
            time.sleep(0.2)
        studio.output = log.read_text().splitlines()
        yield studio
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ------------------------------------------------------------------------------------------- raw HTTP


def raw_request(
    port: int, head: str, body_parts: Iterator[bytes] | None = None, timeout: float = 10.0
) -> tuple[bytes, int]:
    """Send a request head and then body parts until the server answers; returns what it answered
    (status line, headers, body) and how many body bytes went out. Stops sending at the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        connection.setblocking(False)
        answer = b""
        deadline = time.monotonic() + timeout
        parts = iter(body_parts or ())
        pending: bytes | None = b""
        sent = 0
        while time.monotonic() < deadline:
            with contextlib.suppress(BlockingIOError, ConnectionResetError):
                chunk = connection.recv(65536)
                if not chunk:
                    break
                answer += chunk
                if b"\r\n\r\n" in answer and _complete(answer):
                    break
            if pending is not None and not answer:
                pending = pending or next(parts, None)
                with contextlib.suppress(BlockingIOError, BrokenPipeError, ConnectionResetError):
                    count = connection.send(pending) if pending else 0
                    sent += count
                    pending = pending[count:] if pending else None
            else:
                time.sleep(0.002)
        return answer, sent


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return True


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0


# ------------------------------------------------------------------------------------------- hostile images


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int) -> bytes:
    """The signature and header of an RGB PNG of width x height, with no pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)


def png_bomb(width: int, height: int) -> bytes:
    """A valid RGB PNG of black pixels: a few hundred KB on disk, width*height*3 bytes decoded."""
    packer = zlib.compressobj(9)
    row = bytes(1 + 3 * width)  # filter byte 0, then black pixels
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return png_header(width, height) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def jpeg_bomb(width: int, height: int) -> bytes:
    """A small JPEG whose frame header claims width x height: decoders allocate the full frame."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(buffer, format="JPEG", quality=90)
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")  # baseline frame header: length, precision, height, width
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)
