"""Accessories placed by face landmarks: sunglasses, hats, crowns, ears, horns, halo, mustache, noses,
cheek stickers, tattoo marks, eye masks and flower crowns.

Shapes are written in face-local units: origin between the eyes, x along the eye line (towards the image
right), y down the face, 1 unit = the face scale (about the distance between the eyes). On a frontal
face the forehead landmark is at y = -0.9, the nose tip at 0.7, the mouth at 1.1, the chin at 1.8, the
cheeks at x = +-1.0 and the top of the head around y = -1.8.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from streamingeffect.effects.base import register
from streamingeffect.effects.draw import (
    Canvas,
    bezier_pts,
    ellipse_pts,
    heart_pts,
    star_pts,
    stroke_pts,
)
from streamingeffect.effects.families.common import FaceSticker, over_with_glow
from streamingeffect.effects.landmarks import FaceGeometry
from streamingeffect.parsing.types import FrameParts

RGB = Sequence[float]


def shade(color: RGB, factor: float) -> tuple[float, float, float]:
    """Darker (factor < 1) or lighter (factor > 1, towards white) version of a colour."""
    c = np.asarray(color, np.float64)
    out = c * factor if factor <= 1 else c + (255 - c) * (factor - 1)
    return tuple(float(v) for v in np.clip(out, 0, 255))


def mirror(points: np.ndarray) -> np.ndarray:
    """Reflect local points across the face's vertical mid-line."""
    return np.asarray(points) * np.array([-1.0, 1.0])


def symmetric(right_half: np.ndarray) -> np.ndarray:
    """Closed outline from its image-right half (listed top centre -> ... -> bottom centre)."""
    return np.concatenate([right_half, mirror(right_half)[::-1]])


def rotate_local(points: np.ndarray, pivot: Sequence[float], degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (np.asarray(points) - pivot) @ rot.T + np.asarray(pivot)


def checked_style(family: str, style: str, known: Sequence[str]) -> str:
    if style not in known:
        raise ValueError(f"{family}: unknown style {style!r}; known: {', '.join(known)}")
    return style


# ---------------------------------------------------------------- sunglasses


def lens_outline(style: str, side: int) -> np.ndarray:
    """Outline of one lens around its own centre; side = +1 for the image-right lens, -1 for the other."""
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    if style == "aviator":  # teardrop: deeper towards the outer bottom
        lower = np.maximum(np.sin(t), 0)
        pts = np.stack(
            [0.31 * np.cos(t) + side * 0.07 * lower, np.where(np.sin(t) > 0, 0.31, 0.19) * np.sin(t)], 1
        )
    elif style == "round":
        pts = ellipse_pts(0, 0, 0.25, 0.25, 40)
    elif style in ("wayfarer", "nerd"):
        pts = np.array([[-0.32, -0.2], [0.32, -0.22], [0.29, 0.12], [0.2, 0.21], [-0.2, 0.21], [-0.29, 0.12]])
        pts[:, 0] *= side
    elif style == "cat_eye":
        pts = np.array(
            [
                [-0.28, -0.14],
                [0.05, -0.19],
                [0.42, -0.3],
                [0.3, 0.08],
                [0.12, 0.2],
                [-0.18, 0.18],
                [-0.3, 0.05],
            ]
        )
        pts[:, 0] *= side
    elif style == "heart":
        pts = heart_pts(0, 0, 0.62)
    elif style == "star":
        pts = star_pts(0, 0.02, 0.36, 0.16)
    else:
        raise ValueError(f"sunglasses: no lens outline for {style!r}")
    return pts


@register
class Sunglasses(FaceSticker):
    """Sunglasses (aviator, round, wayfarer, cat-eye, heart, star, shield visor, 8-bit pixel, clear nerd)."""

    family = "sunglasses"
    region = "face"
    styles = ("aviator", "round", "wayfarer", "cat_eye", "heart", "star", "shield", "pixel", "nerd")
    defaults: ClassVar[dict[str, Any]] = {
        "style": "aviator",
        "frame_color": (212, 175, 55),
        "lens_color": (20, 25, 35),
        "lens_opacity": 0.88,
    }

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        checked_style(self.family, self.params["style"], self.styles)

    def draw(self, canvas: Canvas, face: FaceGeometry, parts: FrameParts) -> None:
        p = self.params
        style, frame_c, lens_c = p["style"], p["frame_color"], p["lens_color"]
        opacity = 0.12 if style == "nerd" else p["lens_opacity"]
        px = max(1.0, face.scale)  # pixels per local unit
        if style == "pixel":
            self._pixel(canvas, face)
            return
        if style == "shield":
            visor = np.array(
                [
                    [-0.95, -0.24],
                    [0.95, -0.24],
                    [0.9, 0.1],
                    [0.65, 0.27],
                    [0.25, 0.22],
                    [0.0, 0.1],
                    [-0.25, 0.22],
                    [-0.65, 0.27],
                    [-0.9, 0.1],
                ]
            )
            canvas.polygon(face.to_px(visor), lens_c, opacity)
            canvas.polygon(
                face.to_px(np.array([[-0.85, -0.2], [0.85, -0.2], [0.8, -0.1], [-0.8, -0.1]])),
                shade(lens_c, 1.6),
                opacity,
            )
            canvas.polyline(face.to_px(visor), frame_c, 0.05 * px, closed=True)
            self._temples(canvas, face, frame_c, 0.93)
            return
        thick = {"wayfarer": 0.075, "nerd": 0.08, "cat_eye": 0.07}.get(style, 0.04) * px
        for side in (-1, 1):
            centre = np.array([side * 0.48, 0.04])
            outline = centre + lens_outline(style, side)
            canvas.polygon(face.to_px(outline), lens_c, opacity)
            gloss = centre + np.array([[-0.15, -0.1], [-0.02, -0.14], [-0.14, 0.06], [-0.2, 0.02]])
            canvas.polygon(face.to_px(gloss), (255, 255, 255), 0.35)
            canvas.polyline(face.to_px(outline), frame_c, thick, closed=True)
        bridge = bezier_pts((-0.24, -0.06), (0.0, -0.16), (0.24, -0.06), 8)
        canvas.polyline(face.to_px(bridge), frame_c, max(thick, 0.04 * px))
        if style == "aviator":  # the top bar of aviators
            canvas.polyline(face.to_px(np.array([[-0.3, -0.16], [0.3, -0.16]])), frame_c, 0.03 * px)
        self._temples(canvas, face, frame_c, 0.79)

    def _temples(self, canvas: Canvas, face: FaceGeometry, color: RGB, x0: float) -> None:
        for side in (-1, 1):
            arm = np.array([[side * x0, -0.06], [side * 1.06, -0.04]])
            canvas.polyline(face.to_px(arm), color, 0.05 * face.scale)

    def _pixel(self, canvas: Canvas, face: FaceGeometry) -> None:
        """8-bit 'deal with it' shades: a black bar with stepped pixel lenses and white pixel glints."""
        s = 0.085  # one pixel of the pixel-art, in face units
        black = self.params["lens_color"]
        canvas.polygon(
            face.to_px(np.array([[-1.0, -0.2], [1.0, -0.2], [1.0, -0.2 + s], [-1.0, -0.2 + s]])), black
        )
        for side in (-1, 1):
            for row, (x0, x1) in enumerate(((0.14, 0.86), (0.2, 0.8), (0.28, 0.72))):
                y0 = -0.2 + s * (row + 1)
                quad = np.array([[x0, y0], [x1, y0], [x1, y0 + s], [x0, y0 + s]]) * [side, 1]
                canvas.polygon(face.to_px(quad), black)
            for gx, gy in ((0.36, -0.2 + s), (0.45, -0.2 + 2 * s)):
                glint = np.array([[gx, gy], [gx + s, gy], [gx + s, gy + s], [gx, gy + s]]) * [side, 1]
                canvas.polygon(face.to_px(glint), (255, 255, 255))


# ---------------------------------------------------------------- hats


@register
class Hat(FaceSticker):
    """A hat sitting on the head (top hat, cowboy, beanie, party cone, wizard, baseball cap, chef)."""

    family = "hat"
    region = "hair"
    styles = ("top_hat", "cowboy", "beanie", "party", "wizard", "cap", "chef")
    defaults: ClassVar[dict[str, Any]] = {"style": "top_hat", "color": (25, 25, 30), "accent": (190, 20, 40)}

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        checked_style(self.family, self.params["style"], self.styles)

    def draw(self, canvas: Canvas, face: FaceGeometry, parts: FrameParts) -> None:
        base = np.array([0.0, -1.0])  # where the hat meets the forehead
        getattr(self, f"_{self.params['style']}")(canvas, face, base, face.scale)

    def _poly(self, canvas: Canvas, face: FaceGeometry, pts, color: RGB, outline: bool = True) -> None:
        canvas.polygon(face.to_px(pts), color)
        if outline:
            canvas.polyline(face.to_px(pts), shade(color, 0.55), 0.03 * face.scale, closed=True)

    def _top_hat(self, canvas, face, b, px) -> None:
        c, a = self.params["color"], self.params["accent"]
        self._poly(canvas, face, b + ellipse_pts(0, 0, 1.5, 0.2), shade(c, 1.15))
        crown = b + np.array([[-1.0, 0.0], [-1.08, -1.5], [1.08, -1.5], [1.0, 0.0]])
        self._poly(canvas, face, crown, c)
        self._poly(
            canvas, face, b + np.array([[-1.0, -0.02], [-1.02, -0.35], [1.02, -0.35], [1.0, -0.02]]), a
        )
        self._poly(canvas, face, b + ellipse_pts(0, -1.5, 1.08, 0.13), shade(c, 1.3))
        self._poly(canvas, face, b + ellipse_pts(0, 0, 1.5, 0.2, 20, 0, 180), shade(c, 1.15))

    def _cowboy(self, canvas, face, b, px) -> None:
        c, a = self.params["color"], self.params["accent"]
        xs = np.linspace(-1.85, 1.85, 21)
        lower = 0.18 - 0.5 * (np.abs(xs) / 1.85) ** 3
        brim = np.concatenate([np.stack([xs, lower], 1), np.stack([xs[::-1], lower[::-1] - 0.22], 1)])
        crown = np.array(
            [
                [-0.95, 0.0],
                [-0.85, -0.9],
                [-0.4, -1.15],
                [0.0, -0.95],
                [0.4, -1.15],
                [0.85, -0.9],
                [0.95, 0.0],
            ]
        )
        self._poly(canvas, face, b + crown, c)
        self._poly(
            canvas, face, b + np.array([[-0.95, -0.02], [-0.92, -0.28], [0.92, -0.28], [0.95, -0.02]]), a
        )
        self._poly(canvas, face, b + brim, shade(c, 0.9))

    def _beanie(self, canvas, face, b, px) -> None:
        c, a = self.params["color"], self.params["accent"]
        self._poly(canvas, face, b + ellipse_pts(0, -0.1, 1.18, 1.2, 30, 180, 360), c)
        pom = b + star_pts(0, -1.35, 0.38, 0.28, 14)
        self._poly(canvas, face, pom, a)
        cuff = b + np.array([[-1.22, 0.12], [-1.22, -0.32], [1.22, -0.32], [1.22, 0.12]])
        self._poly(canvas, face, cuff, shade(c, 0.8))
        for x in np.linspace(-1.05, 1.05, 11):
            canvas.polyline(face.to_px(b + np.array([[x, 0.08], [x, -0.28]])), shade(c, 0.6), 0.03 * px)

    def _party(self, canvas, face, b, px) -> None:
        c, a = self.params["color"], self.params["accent"]
        tip = np.array([0.25, -2.1])
        left, right = np.array([-0.6, -0.45]), np.array([0.65, -0.5])
        cone = b + np.array([left, tip, right])
        self._poly(canvas, face, cone, c)
        for t, u in ((0.25, 0.3), (0.55, 0.6), (0.35, 0.75), (0.7, 0.35), (0.5, 0.15)):
            dot = left + (right - left) * u + (tip - (left + right) / 2) * t * (1 - abs(u - 0.5))
            canvas.circle(face.to_px((b + dot)[None])[0], 0.08 * px, a)
        trim = bezier_pts(left, (left + right) / 2 + [0, 0.12], right, 12)
        canvas.polyline(face.to_px(b + trim), (255, 255, 255), 0.1 * px)
        canvas.circle(face.to_px((b + tip)[None])[0], 0.18 * px, a)

    def _wizard(self, canvas, face, b, px) -> None:
        c, a = self.params["color"], self.params["accent"]
        self._poly(canvas, face, b + ellipse_pts(0, 0, 1.65, 0.24), shade(c, 0.85))
        cone = np.concatenate(
            [
                bezier_pts((-0.95, -0.05), (-0.6, -1.3), (0.55, -2.45), 12),
                bezier_pts((0.55, -2.45), (0.5, -1.3), (0.95, -0.05), 12),
            ]
        )
        self._poly(canvas, face, b + cone, c)
        self._poly(
            canvas, face, b + np.array([[-0.95, -0.05], [-0.88, -0.32], [0.9, -0.32], [0.95, -0.05]]), a
        )
        for x, y, r in ((-0.3, -0.8, 0.16), (0.25, -1.3, 0.12), (0.1, -0.6, 0.09)):
            self._poly(canvas, face, b + star_pts(x, y, r, r * 0.45), (255, 220, 60), outline=False)

    def _cap(self, canvas, face, b, px) -> None:
        c, a = self.params["color"], self.params["accent"]
        self._poly(canvas, face, b + ellipse_pts(0, 0.05, 1.15, 1.05, 30, 180, 360), c)
        for x in (-0.45, 0.45):
            seam = bezier_pts((0, -1.0), (x * 1.1, -0.75), (x * 1.4, 0.0), 10)
            canvas.polyline(face.to_px(b + seam), shade(c, 0.6), 0.03 * px)
        canvas.circle(face.to_px((b + np.array([0, -1.0]))[None])[0], 0.09 * px, shade(c, 0.7))
        visor = ellipse_pts(0, 0.02, 1.22, 0.35, 24, 0, 180)
        self._poly(canvas, face, b + visor, a)
        self._poly(canvas, face, b + ellipse_pts(0, -0.42, 0.3, 0.2), a, outline=False)

    def _chef(self, canvas, face, b, px) -> None:
        white = (248, 248, 250)
        for x, y, r in (
            (-0.7, -1.0, 0.5),
            (0.7, -1.0, 0.5),
            (-0.35, -1.35, 0.55),
            (0.35, -1.35, 0.55),
            (0.0, -1.1, 0.6),
        ):
            self._poly(canvas, face, b + ellipse_pts(x, y, r, r), white)
        self._poly(
            canvas, face, b + np.array([[-1.0, 0.05], [-1.0, -0.55], [1.0, -0.55], [1.0, 0.05]]), white
        )


# ---------------------------------------------------------------- crowns, halo, horns, ears


CROWN_METALS = {
    "gold": ((250, 200, 40), (175, 115, 10), (255, 245, 170)),
    "silver": ((215, 220, 230), (125, 130, 150), (255, 255, 255)),
    "rose_gold": ((240, 165, 140), (170, 95, 80), (255, 225, 210)),
}


@register
class Crown(FaceSticker):
    """A crown on top of the head (king's crown with spikes and jewels, tiara, laurel wreath)."""

    family = "crown"
    region = "hair"
    styles = ("king", "tiara", "laurel")
    defaults: ClassVar[dict[str, Any]] = {"style": "king", "metal": "gold", "jewel": (220, 20, 60)}

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        checked_style(self.family, self.params["style"], self.styles)
        if self.params["metal"] not in CROWN_METALS:
            raise ValueError(f"crown: unknown metal {self.params['metal']!r}")

    def draw(self, canvas: Canvas, face: FaceGeometry, parts: FrameParts) -> None:
        base, dark, light = CROWN_METALS[self.params["metal"]]
        jewel, px = self.params["jewel"], face.scale
        style = self.params["style"]
        if style == "king":
            top = np.array(
                [
                    [0.8, -1.6],
                    [0.95, -2.3],
                    [0.45, -1.85],
                    [0.0, -2.45],
                    [-0.45, -1.85],
                    [-0.95, -2.3],
                    [-0.8, -1.6],
                ]
            )
            body = np.concatenate([np.array([[-0.8, -1.2], [0.8, -1.2]]), top])
            canvas.polygon(face.to_px(body), base)
            band = np.array([[-0.8, -1.2], [0.8, -1.2], [0.8, -1.45], [-0.8, -1.45]])
            canvas.polygon(face.to_px(band), dark)
            canvas.polyline(face.to_px(body), shade(dark, 0.7), 0.04 * px, closed=True)
            canvas.polyline(face.to_px(np.array([[-0.7, -1.52], [0.7, -1.52]])), light, 0.04 * px)
            for x, y in ((0.95, -2.3), (0.0, -2.45), (-0.95, -2.3)):
                canvas.circle(face.to_px(np.array([[x, y]]))[0], 0.09 * px, light)
            for i, x in enumerate((-0.5, 0.0, 0.5)):
                gem = (jewel, (40, 90, 230), jewel)[i]
                canvas.polygon(face.to_px(star_pts(x, -1.33, 0.13, 0.09, 4, 0)), gem)
                canvas.circle(face.to_px(np.array([[x - 0.03, -1.36]]))[0], 0.03 * px, (255, 255, 255))
        elif style == "tiara":
            arc = bezier_pts((-0.95, -1.25), (0.0, -1.75), (0.95, -1.25), 16)
            peaks = np.array([[-0.55, -1.6], [-0.3, -1.85], [0.0, -2.15], [0.3, -1.85], [0.55, -1.6]])
            body = np.concatenate([arc, peaks[::-1]])
            canvas.polygon(face.to_px(body), base)
            canvas.polyline(face.to_px(body), dark, 0.035 * px, closed=True)
            canvas.polyline(face.to_px(arc), light, 0.05 * px)
            canvas.polygon(face.to_px(ellipse_pts(0.0, -1.78, 0.13, 0.18, 16)), jewel)
            for x in (-0.3, 0.3):
                canvas.circle(face.to_px(np.array([[x, -1.62]]))[0], 0.07 * px, jewel)
        else:  # laurel: two leafy branches meeting above the forehead
            for side in (-1, 1):
                stem = bezier_pts((side * 1.1, -0.6), (side * 1.05, -1.55), (side * 0.12, -1.7), 9)
                canvas.polyline(face.to_px(stem), dark, 0.05 * px)
                for k, (x, y) in enumerate(stem[1:]):
                    for flip in (-1, 1):
                        leaf = ellipse_pts(0, 0, 0.2, 0.075, 14)
                        leaf = rotate_local(
                            leaf, (0, 0), side * (40 + 10 * k) * flip + (90 if flip > 0 else 0)
                        )
                        canvas.polygon(
                            face.to_px(leaf + np.array([x, y])), base if k % 2 else shade(base, 0.85)
                        )


@register
class Halo(FaceSticker):
    """A glowing golden ring floating above the head, bobbing gently."""

    family = "halo"
    region = "hair"
    defaults: ClassVar[dict[str, Any]] = {"color": (255, 215, 90), "glow": 1.0}

    def draw(self, canvas: Canvas, face: FaceGeometry, parts: FrameParts) -> None:
        bob = 0.06 * np.sin(parts.time * 2.5)
        ring = ellipse_pts(0.0, -2.0 + bob, 0.85, 0.2, 40)
        canvas.polyline(face.to_px(ring), self.params["color"], 0.13 * face.scale, closed=True)
        canvas.polyline(face.to_px(ring), shade(self.params["color"], 1.6), 0.04 * face.scale, closed=True)

    def composite(self, frame: np.ndarray, canvas: Canvas, face: FaceGeometry) -> np.ndarray:
        glow = 2.0 * self.params["glow"]
        return over_with_glow(frame, canvas, self.params["color"], 0.12 * face.scale, glow)


@register
class Horns(FaceSticker):
    """Horns on the head: red devil horns, a spiral unicorn horn or reindeer antlers."""

    family = "horns"
    region = "hair"
    styles = ("devil", "unicorn", "antlers")
    defaults: ClassVar[dict[str, Any]] = {"style": "devil", "color": (200, 20, 25)}

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        checked_style(self.family, self.params["style"], self.styles)

    def draw(self, canvas: Canvas, face: FaceGeometry, parts: FrameParts) -> None:
        c, px, style = self.params["color"], face.scale, self.params["style"]
        if style == "devil":
            for side in (-1, 1):
                line = bezier_pts((side * 0.5, -1.35), (side * 0.95, -1.75), (side * 0.72, -2.3), 14)
                horn = stroke_pts(line, 0.34, 0.0)
                canvas.polygon(face.to_px(horn), c)
                canvas.polygon(
                    face.to_px(stroke_pts(line + np.array([side * -0.05, 0]), 0.08, 0.0)), shade(c, 1.5)
                )
                canvas.polyline(face.to_px(horn), shade(c, 0.5), 0.03 * px, closed=True)
        elif style == "unicorn":
            cone = np.array([[-0.22, -1.05], [0.0, -2.3], [0.22, -1.05]])
            canvas.polygon(face.to_px(cone), c)
            for t in np.linspace(0.1, 0.8, 5):  # spiral grooves
                y = -1.05 - 1.25 * t
                half = 0.22 * (1 - t)
                groove = np.array([[-half, y + 0.06], [half, y - 0.06]])
                canvas.polyline(face.to_px(groove), shade(c, 0.7), 0.035 * px)
            canvas.polyline(face.to_px(cone), shade(c, 0.6), 0.03 * px, closed=True)
        else:
            for side in (-1, 1):
                beam = bezier_pts((side * 0.55, -1.3), (side * 1.4, -1.7), (side * 1.25, -2.55), 12)
                canvas.polyline(face.to_px(beam), c, 0.13 * px)
                for k, length in ((4, 0.45), (7, 0.5), (10, 0.35)):
                    start = beam[k]
                    tine = np.array([start, start + np.array([side * -0.25, -length])])
                    canvas.polyline(face.to_px(tine), c, 0.09 * px)


EAR_SHAPES = ("cat", "bunny", "bear", "fox", "mouse", "puppy")


@register
class AnimalEars(FaceSticker):
    """Animal ears on the head: cat, bunny, bear, fox, mouse or floppy puppy ears."""

    family = "animal_ears"
    region = "hair"
    defaults: ClassVar[dict[str, Any]] = {"style": "cat", "color": (40, 35, 35), "inner": (255, 160, 190)}

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        checked_style(self.family, self.params["style"], EAR_SHAPES)

    def draw(self, canvas: Canvas, face: FaceGeometry, parts: FrameParts) -> None:
        c, inner, px, style = self.params["color"], self.params["inner"], face.scale, self.params["style"]
        for side in (-1, 1):
            if style in ("cat", "fox"):
                h = 0.8 if style == "cat" else 1.0
                outer = np.array([[-0.42, 0.0], [0.05, -h], [0.42, 0.0]])
                inside = outer * [0.55, 0.7] + [0, -0.05]
                pivot, tilt = np.array([side * 0.72, -1.45]), side * 20
            elif style == "bunny":
                outer = ellipse_pts(0, -0.8, 0.24, 0.85, 30)
                inside = ellipse_pts(0, -0.75, 0.12, 0.62, 24)
                pivot, tilt = np.array([side * 0.4, -1.5]), side * 14
            elif style in ("bear", "mouse"):
                r = 0.36 if style == "bear" else 0.55
                outer = ellipse_pts(0, 0, r, r, 30)
                inside = ellipse_pts(0, 0, r * 0.6, r * 0.6, 24)
                pivot, tilt = np.array([side * (0.85 if style == "bear" else 0.95), -1.55]), 0
            else:  # puppy: long floppy ears hanging beside the face
                outer = ellipse_pts(0, 0.55, 0.3, 0.7, 30)
                inside = ellipse_pts(0, 0.6, 0.16, 0.5, 24)
                pivot, tilt = np.array([side * 1.05, -0.95]), side * -12
            canvas.polygon(face.to_px(rotate_local(outer + pivot, pivot, tilt)), c)
            canvas.polyline(
                face.to_px(rotate_local(outer + pivot, pivot, tilt)), shade(c, 0.6), 0.03 * px, True
            )
            if style != "puppy":
                canvas.polygon(face.to_px(rotate_local(inside + pivot, pivot, tilt)), inner)
            if style == "fox":
                tip = np.array([[-0.13, -0.72], [0.05, -1.0], [0.2, -0.72]])
                canvas.polygon(face.to_px(rotate_local(tip + pivot, pivot, tilt)), (30, 25, 25))


# ---------------------------------------------------------------- lower-face stickers


MUSTACHES = {
    "handlebar": np.array(
        [
            [0, -0.08],
            [0.15, -0.12],
            [0.32, -0.1],
            [0.48, -0.04],
            [0.6, -0.03],
            [0.7, -0.1],
            [0.74, -0.2],
            [0.68, -0.26],
            [0.66, -0.18],
            [0.6, -0.1],
            [0.5, 0.05],
            [0.32, 0.08],
            [0.15, 0.06],
            [0, 0.02],
        ]
    ),
    "chevron": np.array(
        [[0, -0.11], [0.3, -0.11], [0.48, -0.03], [0.55, 0.12], [0.36, 0.12], [0.15, 0.1], [0, 0.08]]
    ),
    "pencil": np.array([[0, -0.03], [0.25, -0.04], [0.45, -0.02], [0.47, 0.0], [0.25, 0.01], [0, 0.01]]),
    "walrus": np.array(
        [
            [0, -0.12],
            [0.35, -0.13],
            [0.55, 0.0],
            [0.62, 0.28],
            [0.5, 0.22],
            [0.42, 0.3],
            [0.33, 0.21],
            [0.23, 0.29],
            [0.12, 0.21],
            [0, 0.27],
        ]
    ),
}


@register
class Mustache(FaceSticker):
    """A fake mustache under the nose (handlebar, chevron, pencil, walrus)."""

    family = "mustache"
    region = "face"
    defaults: ClassVar[dict[str, Any]] = {"style": "handlebar", "color": (45, 30, 20)}

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        checked_style(self.family, self.params["style"], tuple(MUSTACHES))

    def draw(self, canvas: Canvas, face: FaceGeometry, parts: FrameParts) -> None:
        # Between the nose base and the upper lip, measured on this face.
        anchor = 0.5 * (face.local(face.pt(2)) + face.local(face.pt(0)))
        outline = symmetric(MUSTACHES[self.params["style"]]) + anchor
        canvas.polygon(face.to_px(outline), self.params["color"])
        canvas.polyline(face.to_px(outline), shade(self.params["color"], 0.6), 0.02 * face.scale, closed=True)


@register
class NoseSticker(FaceSticker):
    """A funny nose on the nose tip: red clown ball, pig snout, dog nose, or cat nose with whiskers."""

    family = "nose_sticker"
    region = "face"
    styles = ("clown", "pig", "dog", "cat")
    defaults: ClassVar[dict[str, Any]] = {"style": "clown", "color": (230, 20, 30)}

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        checked_style(self.family, self.params["style"], self.styles)

    def draw(self, canvas: Canvas, face: FaceGeometry, parts: FrameParts) -> None:
        tip = face.local(face.pt(1))
        c, px, style = self.params["color"], face.scale, self.params["style"]
        if style == "clown":
            canvas.polygon(face.to_px(tip + ellipse_pts(0, 0, 0.27, 0.27)), shade(c, 0.7))
            canvas.polygon(face.to_px(tip + ellipse_pts(-0.02, -0.02, 0.24, 0.24)), c)
            canvas.polygon(face.to_px(tip + ellipse_pts(-0.09, -0.1, 0.07, 0.05, 12)), (255, 255, 255), 0.85)
        elif style == "pig":
            canvas.polygon(face.to_px(tip + ellipse_pts(0, 0.03, 0.3, 0.22)), c)
            canvas.polyline(face.to_px(tip + ellipse_pts(0, 0.03, 0.3, 0.22)), shade(c, 0.7), 0.03 * px, True)
            for x in (-0.11, 0.11):
                canvas.polygon(face.to_px(tip + ellipse_pts(x, 0.04, 0.05, 0.1, 14)), shade(c, 0.45))
        elif style == "dog":
            nose = np.array([[-0.26, -0.08], [0.26, -0.08], [0.2, 0.1], [0.0, 0.2], [-0.2, 0.1]])
            canvas.polygon(face.to_px(tip + nose), c)
            canvas.polygon(face.to_px(tip + ellipse_pts(-0.08, -0.02, 0.07, 0.04, 12)), (255, 255, 255), 0.8)
            canvas.polyline(face.to_px(tip + np.array([[0, 0.2], [0, 0.38]])), c, 0.035 * px)
        else:
            canvas.polygon(face.to_px(tip + np.array([[-0.14, -0.05], [0.14, -0.05], [0.0, 0.1]])), c)
            for side in (-1, 1):
                for dy, end in ((-0.05, -0.2), (0.08, 0.08), (0.2, 0.35)):
                    whisker = np.array([[side * 0.28, 0.15 + dy], [side * 1.1, 0.15 + end]])
                    canvas.polyline(face.to_px(tip + whisker), (30, 30, 30), 0.025 * px)


def sticker_shape(shape: str, size: float) -> list[np.ndarray]:
    """Outline(s) of a small sticker centred on the origin."""
    if shape == "heart":
        return [heart_pts(0, 0, size)]
    if shape == "star":
        return [star_pts(0, 0, size * 0.55, size * 0.24)]
    if shape == "sparkle":
        return [star_pts(0, 0, size * 0.6, size * 0.12, 4, 0)]
    if shape == "flower":
        petals = [
            ellipse_pts(size * 0.3 * np.cos(a), size * 0.3 * np.sin(a), size * 0.25, size * 0.25, 16)
            for a in np.linspace(0, 2 * np.pi, 5, endpoint=False)
        ]
        return petals
    raise ValueError(f"unknown sticker shape {shape!r}")


@register
class CheekStickers(FaceSticker):
    """Cute stickers on both cheeks (hearts, stars, sparkles, flowers) that pulse slightly."""

    family = "cheek_stickers"
    region = "face"
    defaults: ClassVar[dict[str, Any]] = {"shape": "heart", "color": (255, 60, 120), "size": 0.42}

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        sticker_shape(self.params["shape"], 1.0)

    def draw(self, canvas: Canvas, face: FaceGeometry, parts: FrameParts) -> None:
        size = self.params["size"] * (1.0 + 0.08 * np.sin(parts.time * 6.0))
        for side in (-1, 1):
            centre = np.array([side * 0.72, 0.6])
            for outline in sticker_shape(self.params["shape"], size):
                canvas.polyline(face.to_px(outline + centre), (255, 255, 255), 0.08 * face.scale, closed=True)
            for outline in sticker_shape(self.params["shape"], size):
                canvas.polygon(face.to_px(outline + centre), self.params["color"])
            if self.params["shape"] == "flower":
                canvas.circle(face.to_px(centre[None])[0], 0.12 * size * face.scale, (255, 220, 60))


@register
class FaceTattoo(FaceSticker):
    """Tattoo-like ink marks on the face: a teardrop, small stars, tribal swooshes or tiny hearts."""

    family = "face_tattoo"
    region = "face"
    styles = ("teardrop", "stars", "tribal", "hearts")
    defaults: ClassVar[dict[str, Any]] = {"style": "teardrop", "color": (25, 25, 35), "opacity": 0.85}

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        checked_style(self.family, self.params["style"], self.styles)

    def draw(self, canvas: Canvas, face: FaceGeometry, parts: FrameParts) -> None:
        c, o, px, style = self.params["color"], self.params["opacity"], face.scale, self.params["style"]
        if style == "teardrop":
            t = np.linspace(0, np.pi, 16)
            drop = np.concatenate(
                [[[0, -0.28]], np.stack([0.12 * np.cos(t), 0.12 * np.sin(t)], 1)[::-1] * [-1, 1]]
            )
            canvas.polyline(face.to_px(drop + np.array([-0.66, 0.45])), c, 0.05 * px, closed=True, opacity=o)
            canvas.polygon(face.to_px(drop * 0.9 + [-0.42, 0.62]), c, o)
        elif style == "stars":
            for x, y, r in ((0.92, 0.05, 0.2), (0.95, 0.42, 0.14), (0.72, 0.62, 0.1)):
                canvas.polygon(face.to_px(star_pts(x, y, r, r * 0.45)), c, o)
        elif style == "tribal":
            for p0, p1, p2, w in (
                ((-0.95, -0.55), (-1.15, 0.1), (-0.6, 0.55), 0.13),
                ((-0.8, -0.1), (-0.85, 0.3), (-0.45, 0.75), 0.1),
                ((-0.55, -0.55), (-0.4, -0.75), (-0.1, -0.7), 0.08),
            ):
                canvas.polygon(face.to_px(stroke_pts(bezier_pts(p0, p1, p2, 14), w, 0.0)), c, o)
        else:
            for x, y, s in ((-0.6, 0.45, 0.3), (0.62, 0.48, 0.24), (0.88, 0.22, 0.16)):
                canvas.polygon(face.to_px(heart_pts(x, y, s)), c, o)


@register
class EyeMask(FaceSticker):
    """A mask over the eyes with eye holes: superhero domino, ornate masquerade, or bandit band."""

    family = "eye_mask"
    region = "face"
    styles = ("domino", "masquerade", "bandit")
    defaults: ClassVar[dict[str, Any]] = {"style": "domino", "color": (20, 20, 25), "trim": (212, 175, 55)}

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        checked_style(self.family, self.params["style"], self.styles)

    def draw(self, canvas: Canvas, face: FaceGeometry, parts: FrameParts) -> None:
        c, trim, px, style = self.params["color"], self.params["trim"], face.scale, self.params["style"]
        if style == "bandit":
            half = np.array(
                [[0, -0.28], [0.9, -0.3], [1.18, -0.25], [1.18, 0.22], [0.9, 0.27], [0.2, 0.25], [0, 0.18]]
            )
        else:
            half = np.array(
                [
                    [0, -0.24],
                    [0.25, -0.34],
                    [0.6, -0.36],
                    [0.92, -0.28],
                    [1.02, -0.05],
                    [0.92, 0.2],
                    [0.65, 0.3],
                    [0.35, 0.26],
                    [0.14, 0.14],
                    [0, 0.12],
                ]
            )
            if style == "masquerade":  # swept-up wings at the outer corners
                half = np.insert(half, 4, [[1.3, -0.75], [1.1, -0.2]], axis=0)
        outline = symmetric(half)
        holes = [ellipse_pts(side * 0.47, 0.02, 0.21, 0.11, 24) for side in (-1, 1)]
        canvas.polygons([face.to_px(outline), *(face.to_px(h) for h in holes)], c)
        if style != "bandit":
            canvas.polyline(face.to_px(outline), trim, 0.04 * px, closed=True)
            for h in holes:
                canvas.polyline(face.to_px(h), trim, 0.03 * px, closed=True)
        if style == "masquerade":
            for x, y in ((0.0, -0.3), (1.2, -0.65), (-1.2, -0.65)):
                canvas.polygon(face.to_px(star_pts(x, y, 0.11, 0.05, 4, 0)), (255, 255, 255))


FLOWER_PALETTES = {
    "spring": ((255, 150, 190), (255, 255, 255), (255, 210, 80), (200, 160, 255)),
    "roses": ((220, 20, 60), (255, 80, 110), (180, 10, 40)),
    "sunflower": ((255, 205, 20), (255, 180, 0)),
    "lavender": ((170, 130, 230), (200, 170, 255), (140, 100, 210)),
}


@register
class FlowerCrown(FaceSticker):
    """A wreath of flowers and leaves across the top of the head."""

    family = "flower_crown"
    region = "hair"
    defaults: ClassVar[dict[str, Any]] = {"palette": "spring"}

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        if self.params["palette"] not in FLOWER_PALETTES:
            raise ValueError(f"flower_crown: unknown palette {self.params['palette']!r}")

        self.shapes = self._layout()

    def _layout(self) -> list[tuple[np.ndarray, RGB, RGB | None]]:
        """The wreath in face-local units, built once: (outline, fill colour, outline colour or None)."""
        colors = FLOWER_PALETTES[self.params["palette"]]
        centre = np.array([0.0, -1.0])
        angles = np.radians(np.linspace(195, 345, 7))
        spots = centre + np.stack([1.15 * np.cos(angles), 0.55 * np.sin(angles)], axis=1)
        shapes: list[tuple[np.ndarray, RGB, RGB | None]] = []
        for a, (x, y) in zip(angles[:-1] + np.diff(angles) / 2, (spots[:-1] + spots[1:]) / 2, strict=True):
            leaf = rotate_local(ellipse_pts(0, 0, 0.22, 0.08, 14), (0, 0), np.degrees(a) + 90) + np.array(
                [x, y - 0.05]
            )
            shapes.append((leaf, (60, 150, 60), None))
        center_color = (110, 60, 20) if self.params["palette"] == "sunflower" else (255, 215, 60)
        for i, (x, y) in enumerate(spots):
            color = colors[i % len(colors)]
            for a in np.linspace(0, 2 * np.pi, 5, endpoint=False) + i:
                petal = ellipse_pts(x + 0.13 * np.cos(a), y + 0.13 * np.sin(a), 0.12, 0.12, 14)
                shapes.append((petal, color, shade(color, 0.75)))
            shapes.append((ellipse_pts(x, y, 0.08, 0.08, 14), center_color, None))
        return shapes

    def draw(self, canvas: Canvas, face: FaceGeometry, parts: FrameParts) -> None:
        pixels = face.to_px(np.concatenate([pts for pts, _, _ in self.shapes]))  # one transform for all
        start = 0
        for pts, fill, edge in self.shapes:
            poly = pixels[start : start + len(pts)]
            start += len(pts)
            canvas.polygon(poly, fill)
            if edge is not None:
                canvas.polyline(poly, edge, 0.015 * face.scale, closed=True)
