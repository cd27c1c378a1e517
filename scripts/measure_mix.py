"""Measure what photo samples and clip samples teach, to choose the images:clips ratio of the corpus.

    python scripts/measure_mix.py --samples 48 --size 128 --work runs/mix

Builds the corpus twice with the same settings, once from photos only and once from clips only, then
measures on every sample, with OpenCV's DIS optical flow on the source frames:

- motion: mean flow magnitude between the window's first and last frame (pixels at --size);
- non-rigid motion: the flow left after the best homography between those frames (what a camera
  move cannot explain: expressions, gestures, a turning head);
- flow propagation from the reference: the reference's edit (target - source) carried along the flow
  to every other frame of the window, PSNR inside the edit mask against the true target; and the
  same from the long reference. What flow misses is what the network has to learn.

Prints a table and the ratio that gives each person a share of samples proportional to how much
propagation their kind leaves to the network (see docs/DATA.md, "Images and clips").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from streamingeffect.data.build import BuildConfig, build_dataset
from streamingeffect.data.dataset import shard_paths
from streamingeffect.data.shards import Sample, read_shard

FLOW = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)


def flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[H, W, 2] flow from frame a to frame b (RGB uint8): a(x) ~ b(x + flow(x))."""
    return FLOW.calc(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.cvtColor(b, cv2.COLOR_RGB2GRAY), None)


def non_rigid(field: np.ndarray) -> float:
    """Mean flow left after the best homography (RANSAC) between the two frames."""
    height, width = field.shape[:2]
    ys, xs = np.mgrid[0:height:4, 0:width:4]
    src = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32)
    dst = src + field[ys.ravel(), xs.ravel()]
    matrix, _ = cv2.findHomography(src, dst, cv2.RANSAC, 1.0)
    if matrix is None:
        return float(np.linalg.norm(field, axis=-1).mean())
    fitted = cv2.perspectiveTransform(src[None], matrix)[0]
    return float(np.linalg.norm(dst - fitted, axis=1).mean())


def carry(delta: np.ndarray, field: np.ndarray) -> np.ndarray:
    """Backward-warp a [H, W, 3] float change along field (frame j -> reference)."""
    height, width = field.shape[:2]
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return cv2.remap(
        delta, xs + field[..., 0], ys + field[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float | None:
    if mask.sum() < 50:
        return None
    error = float(((a.astype(np.float32) - b.astype(np.float32)) ** 2)[mask].mean())
    return 10 * np.log10(255.0**2 / max(error, 1e-6))


def propagate(sample: Sample, ref_source: np.ndarray, ref_target: np.ndarray) -> float | None:
    """Mean PSNR inside the edit mask of the reference's change carried by flow to every frame."""
    delta = ref_target.astype(np.float32) - ref_source.astype(np.float32)
    scores = []
    for j in range(sample.num_frames):
        predicted = np.clip(sample.source[j] + carry(delta, flow(sample.source[j], ref_source)), 0, 255)
        score = psnr(predicted, sample.target[j], sample.edit_mask[j])
        if score is not None:
            scores.append(score)
    return float(np.mean(scores)) if scores else None


def measure(root: Path) -> dict[str, float]:
    rows = []
    for shard in shard_paths(root):
        for sample in read_shard(shard):
            field = flow(sample.source[0], sample.source[-1])
            ref = int(sample.meta["reference_index"])
            near = propagate(sample, sample.source[ref], sample.target[ref])
            far = propagate(sample, sample.reference_far_source, sample.reference_far)
            rows.append(
                {
                    "motion": float(np.linalg.norm(field, axis=-1).mean()),
                    "non_rigid": non_rigid(field),
                    "near": near,
                    "far": far,
                }
            )

    def mean(key: str) -> float:
        values = [r[key] for r in rows if r[key] is not None]
        return float(np.mean(values)) if values else float("nan")

    return {"samples": len(rows), **{k: round(mean(k), 3) for k in ("motion", "non_rigid", "near", "far")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=48)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--work", default="runs/mix")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--parse-cache", default="")
    args = parser.parse_args()
    work = Path(args.work)
    results = {}
    for kind, ratio in (("photos", 1e9), ("clips", 0.0)):
        config = BuildConfig(
            "corpus",
            work / kind,
            samples=args.samples,
            frames=args.frames,
            size=args.size,
            seed=11,
            image_ratio=ratio,
            augment=False,  # the same people as they are: measure the sources, not the augmentation
            parse_cache=Path(args.parse_cache) if args.parse_cache else work / "parse",
        )
        report = build_dataset(config, "local", args.workers, progress=False)
        people = len([p for p in report.manifest["people"]["train"] if p["samples"]])
        results[kind] = measure(config.out) | {"people": people}
        print(kind, results[kind], flush=True)
    # What flow propagation misses, per kind: dB below a 40 dB ceiling (about what the H.264 storage keeps).
    miss = {k: max(0.1, 40.0 - results[k]["far"]) for k in results}
    per_person = {k: miss[k] for k in results}
    ratio = (per_person["photos"] * results["photos"]["people"]) / (
        per_person["clips"] * results["clips"]["people"]
    )
    print(json.dumps({"results": results, "missed_db": miss, "images_per_clip": round(ratio, 2)}, indent=1))


if __name__ == "__main__":
    main()
