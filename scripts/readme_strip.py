"""The README's picture of its main job: `streamingeffect run --input sample --effect neon_outline_cyan`
on the held-out benchmark person at full resolution; frames from the start, the middle and the end:
the source, the output (read back from the mp4 the command wrote) and the renderer's ground truth.

    .venv/bin/python scripts/readme_strip.py --out docs/main_job_strip.jpg
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from streamingeffect.eval.heldout import load_heldout_frames, render_target
from streamingeffect.eval.leaves import strip
from streamingeffect.io import bundled_clips, read_frames, save_image
from streamingeffect.runtime.runner import RunConfig, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--effect", default="neon_outline_cyan")
    parser.add_argument("--out", default="docs/main_job_strip.jpg")
    args = parser.parse_args()
    clip = next(c.path for c in bundled_clips() if c.name == "single_face")
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "out.mp4"
        summary = run(RunConfig(input="sample", effect=args.effect, output=output, status=False))
        produced = np.stack([f.image for f in read_frames(output)])
    held = load_heldout_frames(clip, len(produced))
    target = render_target(args.effect, held)
    save_image(Path(args.out), strip(held.frames, produced, target))
    height, width = produced.shape[1:3]
    fps = summary["end_to_end_fps"]
    print(f"{len(produced)} frames at {width}x{height}, {fps:.1f} fps end to end -> {args.out}")


if __name__ == "__main__":
    main()
