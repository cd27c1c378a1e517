"""The student against flow propagation on the quick suite's two keyframe sets, per held-out person.

    python scripts/keyframe_sets.py --cache runs/keyframe-sets.pkl

The same clips, ground truth and PSNR inside the edit as `streamingeffect bench --suite quick` (its
keyframe and long keyframe sets only, every held-out person): the student as the runtime runs it, the
student with its correction zeroed (the output is the source plus the flow prior: what the network
adds on top of its prior), and the suite's flow propagation baseline. ``--cache`` keeps the rendered
clips (a few minutes to render) for the next run.
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np
import torch

from streamingeffect.data.dataset import to_signed
from streamingeffect.eval import suite
from streamingeffect.eval.metrics import psnr
from streamingeffect.pipeline import FrameEditor, ModelBundle


def keyframe_sets(cache: Path | None) -> dict[str, list[suite.BenchClip]]:
    if cache is not None and cache.exists():
        return pickle.loads(cache.read_bytes())
    rendered = suite.render_sets(suite.SUITES["quick"])
    clips = {name: rendered[name] for name in suite.KEYFRAME_SETS}
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_bytes(pickle.dumps(clips))
    return clips


def prior_only(method: suite.MethodFn) -> suite.MethodFn:
    """``method`` with every correction the model makes replaced by zero."""

    def run(clip: suite.BenchClip, set_name: str, seed: int) -> suite.Output:
        apply = FrameEditor.apply
        FrameEditor.apply = lambda self, frame, change: apply(self, frame, np.zeros_like(change))
        try:
            return method(clip, set_name, seed)
        finally:
            FrameEditor.apply = apply

    return run


def per_person(method: suite.MethodFn, clips: list[suite.BenchClip], set_name: str) -> dict[str, float]:
    """PSNR inside the edit (dB), the mean over each person's clips (clips with an empty edit skipped)."""
    scores: dict[str, list[float]] = {}
    for index, clip in enumerate(clips):
        first = clip.scored_from
        video = method(clip, set_name, index).video[first:]
        value = psnr(to_signed(video), to_signed(clip.target[first:]), clip.edit[first:])
        if np.isfinite(value):
            scores.setdefault(clip.person, []).append(float(value))
    return {person: float(np.mean(values)) for person, values in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default="student")
    parser.add_argument("--cache", type=Path, default=None, help="rendered clips kept here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sets = keyframe_sets(args.cache)
    student = ModelBundle.load(args.student)
    model = suite.model_method(student, student.default_sampling())
    methods = {
        "student": model,
        "student, correction zeroed (prior only)": prior_only(model),
        "flow propagation of the keyframe": suite.flow_propagation_method,
    }
    for set_name, clips in sets.items():
        rows = {name: per_person(method, clips, set_name) for name, method in methods.items()}
        people = sorted({p for row in rows.values() for p in row})
        print(f"\n{set_name} set, PSNR inside the edit (dB)\n")
        print("| method | " + " | ".join(f"`{p}`" for p in people) + " | mean |")
        print("|---|" + "---:|" * (len(people) + 1))
        for name, row in rows.items():
            cells = [f"{row[p]:.2f}" if p in row else "n/a" for p in people]
            print(f"| {name} | " + " | ".join(cells) + f" | {np.mean(list(row.values())):.2f} |")


if __name__ == "__main__":
    main()
