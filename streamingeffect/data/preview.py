"""Look at a built dataset: a contact sheet PNG and an HTML gallery with playable clips.

Contact sheet by person (builds with people in the manifest): one row per person = the original
picture (a photo, or the clip's frame) | the sample's first and last source frames | the target |
the long reference (a frame seconds away, or another view of the photo), labelled with the person.
Contact sheet by category: one cell per category shown, each cell = source | target | edit mask over
the source, for the reference frame, labelled with the category id and kind.
Gallery: OUT.html plus a folder of side-by-side mp4s (source | target | mask), one per sample shown.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from streamingeffect.data.dataset import shard_paths
from streamingeffect.data.shards import Sample, decode_sample, iter_shard_files, read_shard
from streamingeffect.io import ImageError, VideoError, is_image_file, load_image, read_frames, write_video
from streamingeffect.io.images import save_image

LABEL_HEIGHT = 22
MASK_TINT = np.array([255, 40, 160], np.float32)


def one_per_category(root: Path, limit: int) -> Iterator[Sample]:
    """The first sample of each category, in shard order, at most ``limit`` of them."""
    seen: set[str] = set()
    for shard in shard_paths(root):
        for sample in read_shard(shard):
            if sample.meta["category"] in seen:
                continue
            seen.add(sample.meta["category"])
            yield sample
            if len(seen) >= limit:
                return


def one_per_person(root: Path, limit: int) -> Iterator[Sample]:
    """The first sample of each person (a photo sample where the person has one, so the row shows a
    pseudo-video), in shard order, at most ``limit`` people. Only the chosen samples are decoded."""
    chosen: dict[str, tuple[str, dict[str, bytes]]] = {}
    for shard in shard_paths(root):
        for key, files in iter_shard_files(shard):
            meta = json.loads(files["json"])
            person = str(meta.get("person", ""))
            is_photo = meta["source"].get("kind") == "image"
            if person not in chosen or (is_photo and not _is_photo(chosen[person][1])):
                chosen[person] = (key, files)
    for person in sorted(chosen)[:limit]:
        yield decode_sample(*chosen[person])


def _is_photo(files: dict[str, bytes]) -> bool:
    return json.loads(files["json"])["source"].get("kind") == "image"


def original_picture(sample: Sample, size: int) -> np.ndarray:
    """The picture the sample came from, letterboxed into [size, size, 3]: the photo (framed on the
    person's box when it shows several people) or the clip's frame at the window's start."""
    source = sample.meta["source"]
    path = Path(source["path"])
    try:
        if is_image_file(path):
            image = load_image(path)
            if source.get("focus"):
                from streamingeffect.data.stills import frame_box

                rows, cols = frame_box(image.shape[:2], tuple(source["focus"]))
                image = image[rows, cols]
        else:
            image = next(iter(read_frames(path, start=source["start"], stop=source["start"] + 1))).image
    except (ImageError, VideoError, StopIteration, OSError):
        return np.full((size, size, 3), 200, np.uint8)  # the file moved since the build
    height, width = image.shape[:2]
    scale = size / max(height, width)
    small = cv2.resize(
        image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
    )
    out = np.full((size, size, 3), 255, np.uint8)
    y0, x0 = (size - small.shape[0]) // 2, (size - small.shape[1]) // 2
    out[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    return out


def person_row(sample: Sample) -> np.ndarray:
    """[label + S, 5 S + gaps, 3]: original | first frame | last frame | target | long reference."""
    size = sample.source.shape[1]
    last = sample.num_frames - 1
    far = (
        sample.reference_far if sample.reference_far is not None else np.full((size, size, 3), 200, np.uint8)
    )
    parts = [original_picture(sample, size), sample.source[0], sample.source[last], sample.target[last], far]
    gap = np.full((size, 2, 3), 255, np.uint8)
    row = np.concatenate([x for part in parts for x in (part, gap)][:-1], axis=1)
    label = np.full((LABEL_HEIGHT, row.shape[1], 3), 255, np.uint8)
    meta = sample.meta
    far_info = meta.get("reference_far") or {}
    far_text = f"{far_info['seconds']} s away" if far_info.get("seconds") is not None else "another view"
    text = (
        f"{meta.get('person', '?')} [{meta.get('split', '?')}]  {meta['source'].get('kind', 'video')}: "
        f"{Path(meta['source']['path']).name}  |  {meta['category']}  |  far ref: {far_text}"
    )
    cv2.putText(label, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (20, 20, 20), 1, cv2.LINE_AA)
    return np.concatenate([label, row], axis=0)


def mask_overlay(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Tint the masked pixels of [H, W, 3] magenta and darken the rest, so the mask reads at a glance."""
    out = frame.astype(np.float32) * 0.45
    out[mask] = frame[mask] * 0.35 + MASK_TINT * 0.65
    return out.astype(np.uint8)


def triptych(sample: Sample, frame: int | None = None) -> np.ndarray:
    """[H, 3W + gaps, 3] source | target | mask of one frame, with a label strip on top."""
    index = sample.meta["reference_index"] if frame is None else frame
    parts = [
        sample.source[index],
        sample.target[index],
        mask_overlay(sample.source[index], sample.edit_mask[index]),
    ]
    height = parts[0].shape[0]
    gap = np.full((height, 2, 3), 255, np.uint8)
    row = np.concatenate([parts[0], gap, parts[1], gap, parts[2]], axis=1)
    label = np.full((LABEL_HEIGHT, row.shape[1], 3), 255, np.uint8)
    meta = sample.meta
    text = f"{meta['category']}  [{meta['kind']}{'/' + meta['op'] if meta.get('op') else ''}]"
    scale = min(0.5, 0.5 * row.shape[1] / max(1, 9 * len(text)))
    cv2.putText(label, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, scale, (20, 20, 20), 1, cv2.LINE_AA)
    return np.concatenate([label, row], axis=0)


def contact_sheet(cells: list[np.ndarray], columns: int = 4, pad: int = 6) -> np.ndarray:
    """Tile equally sized cells into one image with white padding."""
    if not cells:
        raise ValueError("nothing to show: the dataset has no samples")
    height, width = cells[0].shape[:2]
    rows = (len(cells) + columns - 1) // columns
    sheet = np.full((rows * (height + pad) + pad, columns * (width + pad) + pad, 3), 255, np.uint8)
    for i, cell in enumerate(cells):
        y = pad + (i // columns) * (height + pad)
        x = pad + (i % columns) * (width + pad)
        sheet[y : y + height, x : x + width] = cell
    return sheet


def has_people(root: Path) -> bool:
    manifest = json.loads((root / "manifest.json").read_text())
    return bool(manifest.get("counts", {}).get("per_person"))


def write_preview(
    root: Path, out: Path, limit: int = 48, columns: int = 4, by: str = "auto"
) -> tuple[Path, Path]:
    """Write the contact sheet to ``out`` (PNG) and the gallery beside it; return both paths.
    ``by``: "person" (one row per person), "category" (one cell per category), or "auto" (by person
    when the manifest has people)."""
    by_person = by == "person" or (by == "auto" and has_people(root))
    out.parent.mkdir(parents=True, exist_ok=True)
    if by_person:
        samples = list(one_per_person(root, limit))
        save_image(out, contact_sheet([person_row(s) for s in samples], columns=1))
    else:
        samples = list(one_per_category(root, limit))
        save_image(out, contact_sheet([triptych(s) for s in samples], columns))
    gallery = out.with_suffix(".html")
    clips = out.with_name(out.stem + "_clips")
    clips.mkdir(exist_ok=True)
    entries = []
    for sample in samples:
        video = clips / f"{sample.key}.mp4"
        write_video(video, [triptych(sample, k) for k in range(sample.num_frames)], fps=sample.meta["fps"])
        entries.append(_gallery_entry(sample, f"{clips.name}/{video.name}"))
    gallery.write_text(_gallery_page(root, out.name, entries))
    return out, gallery


def _gallery_entry(sample: Sample, video: str) -> str:
    meta = sample.meta
    source = meta["source"]
    return (
        '<figure><video src="{video}" autoplay loop muted playsinline></video>'
        "<figcaption><b>{category}</b> <i>{kind}</i><br>&ldquo;{text}&rdquo;<br>"
        "<small>{clip} from frame {start}, step {step}; mask: {aug}</small></figcaption></figure>"
    ).format(
        video=html.escape(video),
        category=html.escape(meta["category"]),
        kind=html.escape(meta["kind"] + (f" / {meta['op']}" if meta.get("op") else "")),
        text=html.escape(meta["text"]),
        clip=html.escape(Path(source["path"]).name),
        start=source["start"],
        step=source["step"],
        aug=html.escape(str(meta.get("mask_augmentation") or "effect area")),
    )


def _gallery_page(root: Path, sheet: str, entries: list[str]) -> str:
    manifest = json.loads((root / "manifest.json").read_text())
    counts = manifest["counts"]
    return f"""<!doctype html><meta charset="utf-8"><title>StreamingEffect dataset preview</title>
<style>body{{font-family:sans-serif;margin:20px;background:#fafafa}}
figure{{display:inline-block;margin:8px;width:400px;vertical-align:top}}
video{{width:100%;border:1px solid #ccc}}figcaption{{font-size:13px}}</style>
<h1>Dataset preview: {html.escape(str(root))}</h1>
<p>{counts["total"]} samples ({", ".join(f"{k}: {v}" for k, v in counts["per_kind"].items())}),
{len(counts["per_category"])} categories. Each clip: source | target | edit mask.
Contact sheet: <a href="{html.escape(sheet)}">{html.escape(sheet)}</a></p>
{"".join(entries)}
"""
