"""The category catalog: named presets of the effect families, with what a user would type for each.

The table is generated from per-family preset lists (colours, styles, intensities) and description
templates. Every "add" edit gets a matching "remove" edit (same family and params, op="remove"), which
the data builder renders the other way round (the accessory on the source, the original as the target).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from streamingeffect.effects.base import FAMILIES, Category
from streamingeffect.effects.families.color import GRADE_LOOKS
from streamingeffect.parsing.types import REGION_NAMES

# Named colours: id slug -> (RGB, words used in descriptions).
COLORS: dict[str, tuple[tuple[int, int, int], str]] = {
    "cyan": ((0, 255, 255), "cyan"),
    "pink": ((255, 60, 190), "hot pink"),
    "green": ((40, 255, 80), "green"),
    "purple": ((170, 60, 255), "purple"),
    "orange": ((255, 130, 0), "orange"),
    "white": ((255, 255, 255), "white"),
    "red": ((255, 30, 40), "red"),
    "blue": ((40, 110, 255), "blue"),
    "gold": ((255, 200, 60), "golden"),
    "yellow": ((255, 230, 30), "yellow"),
    "teal": ((0, 200, 170), "teal"),
    "black": ((15, 15, 18), "black"),
    "silver": ((200, 205, 215), "silver"),
}


@dataclass(frozen=True)
class Preset:
    """One category of a family: id suffix, parameters, and the words filled into the templates."""

    slug: str
    params: dict[str, Any]
    words: dict[str, str]


@dataclass(frozen=True)
class FamilySpec:
    family: str
    prefix: str  # category id = f"{prefix}_{slug}" (or just prefix when slug is empty)
    kind: str  # "effect" | "edit"
    op: str | None  # None for effects; "add" or "modify" for edits ("remove" is derived from "add")
    templates: tuple[str, ...]
    presets: tuple[Preset, ...]
    remove_templates: tuple[str, ...] = field(default=())


def color_presets(names: Iterable[str], key: str = "color", **extra: Any) -> tuple[Preset, ...]:
    return tuple(Preset(n, {key: COLORS[n][0], **extra}, {"color": COLORS[n][1]}) for n in names)


def preset(slug: str, words: str | dict[str, str], **params: Any) -> Preset:
    """Shorthand: a single description word goes into {desc}."""
    return Preset(slug, params, {"desc": words} if isinstance(words, str) else words)


LOOK_WORDS = {
    "teal_orange": "teal and orange",
    "noir": "black-and-white noir",
    "matrix": "matrix green",
    "bleach": "bleach-bypass",
    "golden_hour": "golden-hour",
}

ADD_REMOVE = (
    "remove the {thing}",
    "take off the {thing}",
    "get rid of the {thing} and show the person without it",
)


def _effects() -> list[FamilySpec]:
    e = "effect"
    return [
        FamilySpec(
            "neon_outline",
            "neon_outline",
            e,
            None,
            (
                "add a glowing {color} neon outline around the person",
                "trace the person's silhouette with a bright {color} neon line",
                "make the person's outline glow {color} like a neon sign",
                "{color} neon glow along the body contour",
            ),
            (
                *color_presets(["cyan", "pink", "green", "purple", "orange", "white", "red", "blue"]),
                Preset("rainbow", {"rainbow": True}, {"color": "rainbow"}),
            ),
        ),
        FamilySpec(
            "glow_aura",
            "glow_aura",
            e,
            None,
            (
                "surround the person with a soft {color} glowing aura",
                "add a {color} aura of light radiating from the body",
                "make the person glow with a {color} halo of light",
                "give them a radiant {color} energy aura",
            ),
            color_presets(["gold", "blue", "pink", "green", "purple", "white", "red"]),
        ),
        FamilySpec(
            "fire_aura",
            "fire_aura",
            e,
            None,
            (
                "set the person's outline on fire with {color} flames",
                "add {color} flames rising around the person",
                "surround the body with a {color} fire aura",
                "make {color} fire lick up from the head and shoulders",
            ),
            (
                preset("orange", {"color": "blazing orange"}, palette="fire"),
                preset("blue", {"color": "blue"}, palette="blue"),
                preset("green", {"color": "green"}, palette="green"),
                preset("purple", {"color": "purple"}, palette="purple"),
                preset("gold", {"color": "golden"}, palette="gold"),
            ),
        ),
        FamilySpec(
            "force_field",
            "force_field",
            e,
            None,
            (
                "put a pulsing {color} force field around the person",
                "add {color} energy rings rippling out from the body",
                "surround the person with a {color} shield of glowing rings",
            ),
            color_presets(["blue", "green", "pink", "gold"]),
        ),
        FamilySpec(
            "comic_outline",
            "comic_outline",
            e,
            None,
            (
                "draw a thick {color} comic-book ink outline around the person",
                "make the person look inked like a comic with {color} outlines",
                "add bold {color} cartoon contour lines to the person",
            ),
            (
                preset("black", {"color": "black"}, color=(0, 0, 0)),
                preset("navy", {"color": "dark blue"}, color=(10, 20, 90)),
            ),
        ),
        FamilySpec(
            "cutout",
            "cutout",
            e,
            None,
            (
                "give the person a thick {color} sticker border",
                "make the person look like a cut-out sticker with a {color} edge and a drop shadow",
                "add a {color} cut-out outline around the person like a sticker",
            ),
            color_presets(["white", "yellow", "pink"]),
        ),
        FamilySpec(
            "silhouette",
            "silhouette",
            e,
            None,
            (
                "turn the person into a {desc} silhouette",
                "replace the person with a flat {desc} shape",
                "make the person a {desc} silhouette with a glowing rim",
            ),
            (
                preset("black", "solid black shadow", color=(10, 10, 10)),
                preset("white", "solid white", color=(245, 245, 245), rim=(40, 40, 40)),
                preset("red", "solid red", color=(200, 20, 30)),
                preset("gradient", "pink-to-blue gradient", color=(255, 40, 160), color2=(40, 80, 255)),
            ),
        ),
        FamilySpec(
            "neon_edges",
            "neon_edges",
            e,
            None,
            (
                "turn {target}'s edges into glowing {color} neon lines on a dark image",
                "tron-style {color} glowing edge lines on {target}",
                "darken everything and light up the contours of {target} in {color}",
            ),
            tuple(
                Preset(
                    f"{slug}{'_scene' if target == 'scene' else ''}",
                    {"color": COLORS[slug][0], "target": target},
                    {
                        "color": COLORS[slug][1],
                        "target": "the person" if target == "person" else "the whole scene",
                    },
                )
                for slug, target in (
                    ("pink", "person"),
                    ("cyan", "person"),
                    ("green", "person"),
                    ("orange", "person"),
                    ("cyan", "scene"),
                )
            ),
        ),
        FamilySpec(
            "hand_sparkles",
            "hand_sparkles",
            e,
            None,
            (
                "add {color} sparkles shooting from the hands",
                "magic {color} glitter sparkling around the fingers",
                "make {color} twinkling stars spray out of the hands",
                "sparkly {color} particles following the hands",
            ),
            (
                *color_presets(["gold", "white", "pink", "blue"]),
                Preset("rainbow", {"rainbow": True}, {"color": "rainbow"}),
            ),
        ),
        FamilySpec(
            "light_trails",
            "light_trails",
            e,
            None,
            (
                "add glowing {color} light trails that follow the motion",
                "{color} light-painting streaks swirling around the person",
                "orbs of {color} light circling and leaving long glowing trails",
            ),
            (
                *color_presets(["cyan", "pink", "gold", "green"]),
                Preset("rainbow", {"rainbow": True}, {"color": "rainbow"}),
            ),
        ),
        FamilySpec(
            "confetti",
            "confetti",
            e,
            None,
            (
                "throw {color} confetti falling over the scene",
                "a shower of {color} confetti raining down",
                "celebration with {color} paper confetti tumbling from the top",
            ),
            tuple(
                Preset(n, {"palette": n}, {"color": w})
                for n, w in (
                    ("party", "colourful"),
                    ("gold", "gold"),
                    ("silver", "silver"),
                    ("pastel", "pastel"),
                )
            ),
        ),
        FamilySpec(
            "falling_leaves",
            "falling",
            e,
            None,
            (
                "{desc} falling gently around the person",
                "add drifting {desc} floating down",
                "a shower of {desc} swaying as they fall",
            ),
            (
                preset("sakura", "pink cherry blossom petals", palette="sakura"),
                preset("autumn_leaves", "orange autumn leaves", palette="autumn"),
                preset("golden_leaves", "golden leaves", palette="gold"),
            ),
        ),
        FamilySpec(
            "floating_hearts",
            "floating_hearts",
            e,
            None,
            (
                "{color} hearts floating up around the person",
                "add rising {color} love hearts",
                "make {color} hearts drift upwards like bubbles",
            ),
            (
                preset("red", {"color": "red"}, palette="love"),
                preset("pink", {"color": "pink"}, palette="pink"),
                preset("rainbow", {"color": "rainbow"}, palette="rainbow"),
            ),
        ),
        FamilySpec(
            "bokeh",
            "bokeh",
            e,
            None,
            (
                "dreamy {color} bokeh lights in the background",
                "add blurry {color} out-of-focus light circles behind the person",
                "put soft {color} bokeh orbs floating in a blurred background",
            ),
            tuple(
                preset(n, {"color": w}, palette=n)
                for n, w in (
                    ("warm", "warm golden"),
                    ("cool", "cool blue"),
                    ("rainbow", "multicoloured"),
                    ("pink", "pink"),
                    ("gold", "gold"),
                )
            ),
        ),
        FamilySpec(
            "smoke",
            "smoke",
            e,
            None,
            (
                "{color} smoke rising off the person",
                "add wisps of {color} smoke curling up around the head and shoulders",
                "make the person smoulder with {color} smoke",
            ),
            (
                preset("grey", {"color": "grey"}, color=(140, 140, 150)),
                preset("white", {"color": "white"}, color=(235, 235, 240)),
                preset("purple", {"color": "purple"}, color=(150, 70, 200)),
                preset("green", {"color": "toxic green"}, color=(80, 200, 60)),
            ),
        ),
        FamilySpec(
            "fireflies",
            "fireflies",
            e,
            None,
            (
                "glowing {color} fireflies floating in the background",
                "add tiny {color} lights wandering and blinking behind the person",
                "a dim background full of {color} fireflies",
            ),
            (
                preset("yellow", {"color": "yellow-green"}, color=(200, 255, 110)),
                preset("blue", {"color": "blue"}, color=(90, 170, 255)),
                preset("pink", {"color": "pink"}, color=(255, 120, 200)),
            ),
        ),
        FamilySpec(
            "cartoon",
            "cartoon",
            e,
            None,
            (
                "turn {target} into a cartoon{extra}",
                "make {target} look like a cel-shaded animation{extra}",
                "toon shading on {target}{extra}",
            ),
            (
                preset("person", {"target": "the person", "extra": ""}, target="person"),
                preset(
                    "bold",
                    {"target": "the person", "extra": " with bold ink outlines"},
                    target="person",
                    line=2.0,
                ),
                preset("scene", {"target": "the whole picture", "extra": ""}, target="scene"),
            ),
        ),
        FamilySpec(
            "pixelate",
            "pixelate",
            e,
            None,
            (
                "pixelate {target} with {size} blocks",
                "censor {target} with a {size} pixel mosaic",
                "make {target} blocky and pixelated ({size} pixels)",
            ),
            (
                preset("person", {"target": "the person", "size": "medium"}, target="person", block=9.0),
                preset("person_big", {"target": "the person", "size": "big"}, target="person", block=16.0),
                preset("face", {"target": "the face", "size": "small"}, target="face", block=7.0),
                preset("face_big", {"target": "the face", "size": "big"}, target="face", block=12.0),
            ),
        ),
        FamilySpec(
            "sketch",
            "sketch",
            e,
            None,
            (
                "turn {target} into a {desc}",
                "make {target} look hand-drawn as a {desc}",
                "{desc} style for {target}",
            ),
            (
                preset(
                    "pencil",
                    {"desc": "pencil sketch", "target": "the person"},
                    style="pencil",
                    target="person",
                ),
                preset(
                    "pencil_scene",
                    {"desc": "pencil drawing", "target": "the whole picture"},
                    style="pencil",
                    target="scene",
                ),
                preset(
                    "color_pencil",
                    {"desc": "coloured pencil drawing", "target": "the picture"},
                    style="color_pencil",
                    target="scene",
                ),
                preset(
                    "charcoal",
                    {"desc": "dark charcoal drawing", "target": "the person"},
                    style="charcoal",
                    target="person",
                ),
            ),
        ),
        FamilySpec(
            "pop_art",
            "pop_art",
            e,
            None,
            (
                "make the person a {desc} pop-art poster",
                "Warhol-style pop art of the person in {desc} colours",
                "turn the person into flat {desc} poster colours on a bold background",
            ),
            tuple(
                preset(n, w, palette=n)
                for n, w in (
                    ("warhol", "pink and yellow"),
                    ("cyan", "cyan and blue"),
                    ("sunset", "red and orange"),
                    ("mint", "mint green"),
                )
            ),
        ),
        FamilySpec(
            "halftone",
            "halftone",
            e,
            None,
            (
                "turn {target} into a {desc} halftone print",
                "comic-book halftone dots on {target} ({desc})",
                "render {target} with {desc} printed dots",
            ),
            (
                preset("black", {"desc": "black ink", "target": "the person"}, target="person"),
                preset(
                    "red", {"desc": "red ink", "target": "the person"}, target="person", ink=(200, 20, 40)
                ),
                preset(
                    "blue", {"desc": "blue ink", "target": "the person"}, target="person", ink=(20, 50, 160)
                ),
                preset(
                    "color",
                    {"desc": "full colour", "target": "the whole picture"},
                    target="scene",
                    color=True,
                ),
            ),
        ),
        FamilySpec(
            "statue",
            "statue",
            e,
            None,
            (
                "turn the person into a {desc} statue",
                "make the person look sculpted from polished {desc}",
                "the person as a shiny {desc} sculpture",
            ),
            tuple(
                preset(m, m.replace("_", " "), material=m)
                for m in ("gold", "silver", "bronze", "marble", "jade")
            ),
        ),
        FamilySpec(
            "rgb_split",
            "rgb_split",
            e,
            None,
            (
                "{desc} RGB split glitch",
                "chromatic aberration: pull the red and blue channels apart ({desc})",
                "add a {desc} colour-fringe glitch effect",
            ),
            (
                preset("subtle", "subtle", amount=4.0),
                preset("strong", "strong", amount=10.0, jitter=0.5),
                preset("person", "person-only", amount=8.0, target="person"),
            ),
        ),
        FamilySpec(
            "block_glitch",
            "block_glitch",
            e,
            None,
            (
                "{desc} digital glitch with torn blocks",
                "datamosh the video with {desc} block glitches",
                "add {desc} glitching slices and displaced blocks",
            ),
            (preset("light", "light", intensity=0.7), preset("heavy", "heavy", intensity=1.5)),
        ),
        FamilySpec(
            "hologram",
            "hologram",
            e,
            None,
            (
                "turn the person into a {color} hologram",
                "make the person a flickering {color} sci-fi hologram with scanlines",
                "{color} holographic projection of the person",
            ),
            (*color_presets(["cyan", "green"]), preset("pink", {"color": "pink"}, color=(255, 80, 220))),
        ),
        FamilySpec(
            "echo_trails",
            "echo_trails",
            e,
            None,
            (
                "add {color} ghost echoes trailing behind the person",
                "leave {color} afterimages of the person from previous frames",
                "{color} echo trail effect following the body",
            ),
            (
                preset("purple", {"color": "purple"}, tint=(150, 80, 255)),
                preset("cyan", {"color": "cyan"}, tint=(0, 220, 255)),
                preset("red", {"color": "red"}, tint=(255, 40, 60)),
                preset("rainbow", {"color": "rainbow"}, rainbow=True),
            ),
        ),
        FamilySpec(
            "vhs",
            "vhs",
            e,
            None,
            (
                "make it look like an old VHS tape{desc}",
                "retro VHS look with colour bleeding and tracking lines{desc}",
                "80s videotape effect{desc}",
            ),
            (
                preset("play", " with the PLAY overlay", text=True),
                preset("clean", " without any text", text=False),
            ),
        ),
        FamilySpec(
            "background_blur",
            "background_blur",
            e,
            None,
            (
                "{desc} blur the background",
                "portrait mode with a {desc} blurred background",
                "keep the person sharp and {desc} blur everything behind them",
            ),
            (
                preset("light", "lightly", sigma=5.0),
                preset("strong", "strongly", sigma=10.0),
                preset("extreme", "heavily", sigma=18.0),
            ),
        ),
        FamilySpec(
            "background_replace",
            "background",
            e,
            None,
            (
                "replace the background with {desc}",
                "put the person in front of {desc}",
                "change the backdrop to {desc}",
            ),
            (
                preset("gradient_pink", "a pink-to-purple gradient", style="gradient"),
                preset(
                    "gradient_blue",
                    "a blue-to-teal gradient",
                    style="gradient",
                    color=(40, 90, 255),
                    color2=(0, 210, 180),
                ),
                preset(
                    "gradient_orange",
                    "an orange-to-red gradient",
                    style="gradient",
                    color=(255, 180, 40),
                    color2=(220, 30, 60),
                ),
                preset("sunset", "a sunset sky", style="sunset"),
                preset("stripes", "pink and purple diagonal stripes", style="stripes"),
                preset(
                    "checker",
                    "a black and white checkerboard",
                    style="checker",
                    color=(255, 255, 255),
                    color2=(20, 20, 20),
                ),
                preset("synthwave", "a retro synthwave grid", style="synthwave"),
                preset("starfield", "a starry night sky", style="starfield"),
                preset(
                    "rays", "yellow sunburst rays", style="rays", color=(255, 210, 0), color2=(255, 130, 0)
                ),
                preset("dots", "pink polka dots on purple", style="dots"),
                preset("green_screen", "a green screen", style="green_screen"),
                preset("studio", "a grey photo-studio backdrop", style="studio"),
                preset("rainbow", "a rainbow gradient", style="rainbow"),
            ),
        ),
        FamilySpec(
            "background_desaturate",
            "background_desaturate",
            e,
            None,
            (
                "make the background {desc} and keep the person in colour",
                "colour pop: {desc} background, colourful person",
                "turn everything except the person {desc}",
            ),
            (
                preset("bw", "black and white", darken=0.0),
                preset("dark", "dark black and white", darken=0.45),
                preset("sepia", "sepia", tone=(255, 220, 170)),
            ),
        ),
        FamilySpec(
            "spotlight",
            "spotlight",
            e,
            None,
            (
                "put the person in a {color} stage spotlight",
                "darken the scene and light the person with a {color} spotlight",
                "{color} theatre spotlight shining on the person",
            ),
            (
                preset("white", {"color": "warm white"}, color=(255, 240, 200)),
                preset("pink", {"color": "pink"}, color=(255, 150, 220)),
                preset("blue", {"color": "blue"}, color=(150, 190, 255)),
                preset("green", {"color": "green"}, color=(160, 255, 150)),
            ),
        ),
        FamilySpec(
            "vignette",
            "vignette",
            e,
            None,
            (
                "add a strong {desc} vignette",
                "fade the corners of the picture to {desc}",
                "{desc} vignette around the edges of the frame",
            ),
            (
                preset("black", "black", color=(0, 0, 0)),
                preset("white", "white dreamy", color=(255, 255, 255)),
                preset("purple", "purple", color=(90, 20, 140)),
            ),
        ),
        FamilySpec(
            "mirror",
            "mirror",
            e,
            None,
            (
                "mirror {desc}",
                "make a symmetric {name} mirror image",
                "{name} mirror effect",
            ),
            (
                preset(
                    "left", {"desc": "the left half onto the right", "name": "left-to-right"}, mode="left"
                ),
                preset(
                    "right", {"desc": "the right half onto the left", "name": "right-to-left"}, mode="right"
                ),
                preset("top", {"desc": "the top half onto the bottom", "name": "top-to-bottom"}, mode="top"),
                preset(
                    "kaleidoscope",
                    {"desc": "the image four ways", "name": "four-way kaleidoscope"},
                    mode="quad",
                ),
            ),
        ),
        FamilySpec(
            "film_grain",
            "old_film",
            e,
            None,
            (
                "make it look like an old {desc} film",
                "vintage {desc} movie with grain, scratches and flicker",
                "old film reel look in {desc}",
            ),
            (preset("sepia", "sepia", tone="sepia"), preset("bw", "black and white", tone="bw")),
        ),
        FamilySpec(
            "digital_rain",
            "digital_rain",
            e,
            None,
            (
                "matrix-style {color} digital rain behind the person",
                "falling {color} code characters in the background",
                "add streams of glowing {color} glyphs raining down behind the person",
            ),
            (
                *color_presets(["green"]),
                preset("blue", {"color": "blue"}, color=(60, 160, 255)),
                preset("red", {"color": "red"}, color=(255, 50, 60)),
            ),
        ),
        FamilySpec(
            "rain",
            "rain",
            e,
            None,
            (
                "{desc} rain falling behind the person",
                "add a {desc} rainy background",
                "make it rain {adv} behind the person",
            ),
            (
                preset("light", {"desc": "light", "adv": "lightly"}, density=0.5),
                preset("steady", {"desc": "steady", "adv": "steadily"}, density=1.0),
                preset(
                    "storm",
                    {"desc": "heavy, windy", "adv": "hard in a windy storm"},
                    density=1.8,
                    wind=25.0,
                    speed=1.3,
                ),
            ),
        ),
        FamilySpec(
            "snow",
            "snow",
            e,
            None,
            (
                "{desc} snow falling behind the person",
                "add {desc} snowflakes drifting down in the background",
                "make it snow {adv} behind the person",
            ),
            (
                preset("light", {"desc": "light", "adv": "lightly"}, density=0.5),
                preset("steady", {"desc": "steady", "adv": "steadily"}, density=1.0),
                preset(
                    "blizzard",
                    {"desc": "heavy blizzard", "adv": "heavily in a blizzard"},
                    density=2.0,
                    wind=1.2,
                    size=1.2,
                ),
            ),
        ),
        FamilySpec(
            "lightning",
            "lightning",
            e,
            None,
            (
                "a thunderstorm with {color} lightning behind the person",
                "add {color} lightning bolts striking in the background",
                "stormy sky with flashes of {color} lightning",
            ),
            (
                preset("white", {"color": "blue-white"}, color=(170, 190, 255)),
                preset("purple", {"color": "purple"}, color=(200, 120, 255)),
                preset("red", {"color": "red"}, color=(255, 90, 80)),
            ),
        ),
        FamilySpec(
            "fog",
            "fog",
            e,
            None,
            (
                "{desc} fog drifting behind the person",
                "add a {desc} mist rolling through the background",
                "fill the background with {desc} fog",
            ),
            (
                preset("white", "white", color=(190, 196, 212)),
                preset("green", "toxic green", color=(120, 230, 90)),
                preset("purple", "purple", color=(170, 110, 230)),
                preset("dark", "dark grey", color=(70, 70, 80)),
            ),
        ),
        FamilySpec(
            "color_grade",
            "grade",
            e,
            None,
            (
                "apply a {look} colour grade to {target}",
                "give {target} a {look} look",
                "{look} colour grading on {target}",
            ),
            tuple(
                Preset(
                    f"{look}{'' if target == 'scene' else '_' + target}",
                    {"look": look, "target": target},
                    {
                        "look": LOOK_WORDS.get(look, look.replace("_", " ")),
                        "target": {
                            "scene": "the whole video",
                            "person": "the person",
                            "background": "the background",
                        }[target],
                    },
                )
                for target, looks in (
                    ("scene", GRADE_LOOKS),
                    ("person", ("noir", "vivid", "sepia", "cyberpunk")),
                    ("background", ("noir", "cool", "cyberpunk", "sepia")),
                )
                for look in looks
            ),
        ),
        FamilySpec(
            "duotone",
            "duotone",
            e,
            None,
            (
                "{desc} duotone effect",
                "recolour {target} in two tones: {desc}",
                "two-colour poster look in {desc}",
            ),
            (
                preset("pink_purple", {"desc": "pink and purple", "target": "the picture"}),
                preset(
                    "blue_yellow",
                    {"desc": "blue and yellow", "target": "the picture"},
                    dark=(20, 40, 140),
                    light=(255, 230, 60),
                ),
                preset(
                    "red_navy",
                    {"desc": "red and navy", "target": "the picture"},
                    dark=(10, 20, 60),
                    light=(255, 60, 60),
                ),
                preset(
                    "green_black",
                    {"desc": "green and black", "target": "the picture"},
                    dark=(5, 15, 5),
                    light=(60, 255, 120),
                ),
                preset(
                    "orange_teal_person",
                    {"desc": "orange and teal", "target": "the person"},
                    dark=(0, 70, 80),
                    light=(255, 160, 60),
                    target="person",
                ),
            ),
        ),
        FamilySpec(
            "thermal",
            "thermal",
            e,
            None,
            (
                "thermal camera view{desc}",
                "make it look like an infrared heat camera{desc}",
                "false-colour heat vision{desc}",
            ),
            (
                preset("ironbow", "", palette="ironbow"),
                preset("rainbow", " with a rainbow palette", palette="rainbow"),
                preset("white_hot", " in white-hot black and white", palette="white_hot"),
            ),
        ),
        FamilySpec(
            "night_vision",
            "night_vision",
            e,
            None,
            (
                "night vision goggles view{desc}",
                "green night-vision camera look{desc}",
                "make it look like seen through night vision{desc}",
            ),
            (
                preset("goggles", " with binocular mask", binocular=True),
                preset("full", " in full frame", binocular=False),
            ),
        ),
        FamilySpec(
            "xray",
            "xray",
            e,
            None,
            (
                "x-ray scan of the person in {color}",
                "make the person look like a glowing {color} x-ray image",
                "turn the person into an inverted {color} x-ray",
            ),
            (
                preset("blue", {"color": "blue"}, color=(120, 200, 255)),
                preset("green", {"color": "green"}, color=(120, 255, 150)),
            ),
        ),
    ]


def _adds() -> list[FamilySpec]:
    a = ("add {desc}", "put {desc} on the person", "give the person {desc}")
    return [
        FamilySpec(
            "sunglasses",
            "sunglasses",
            "edit",
            "add",
            (
                "add {desc}",
                "put {desc} on the person's face",
                "make the person wear {desc}",
            ),
            (
                preset("aviator_gold", "gold aviator sunglasses", style="aviator"),
                preset(
                    "aviator_silver",
                    "silver aviator sunglasses with blue lenses",
                    style="aviator",
                    frame_color=(200, 205, 215),
                    lens_color=(30, 70, 160),
                ),
                preset("round_black", "round black sunglasses", style="round", frame_color=(20, 20, 20)),
                preset(
                    "round_gold",
                    "round gold glasses with green lenses",
                    style="round",
                    lens_color=(20, 60, 30),
                ),
                preset(
                    "wayfarer_black", "black wayfarer sunglasses", style="wayfarer", frame_color=(15, 15, 15)
                ),
                preset(
                    "wayfarer_red", "red wayfarer sunglasses", style="wayfarer", frame_color=(200, 20, 30)
                ),
                preset(
                    "cat_eye_pink", "pink cat-eye sunglasses", style="cat_eye", frame_color=(250, 90, 170)
                ),
                preset(
                    "cat_eye_black", "black cat-eye sunglasses", style="cat_eye", frame_color=(15, 15, 15)
                ),
                preset(
                    "heart_pink",
                    "pink heart-shaped sunglasses",
                    style="heart",
                    frame_color=(255, 60, 150),
                    lens_color=(255, 90, 170),
                    lens_opacity=0.8,
                ),
                preset(
                    "star_gold",
                    "gold star-shaped party glasses",
                    style="star",
                    frame_color=(255, 200, 30),
                    lens_color=(40, 20, 80),
                ),
                preset(
                    "shield_silver",
                    "a silver sports visor",
                    style="shield",
                    frame_color=(210, 210, 220),
                    lens_color=(40, 120, 220),
                ),
                preset(
                    "pixel", "pixelated 8-bit 'deal with it' sunglasses", style="pixel", lens_color=(5, 5, 5)
                ),
                preset("nerd_black", "thick black nerd glasses", style="nerd", frame_color=(15, 15, 15)),
            ),
        ),
        FamilySpec(
            "hat",
            "hat",
            "edit",
            "add",
            a,
            (
                preset("top_hat_black", "a black top hat", style="top_hat"),
                preset(
                    "cowboy_brown",
                    "a brown cowboy hat",
                    style="cowboy",
                    color=(130, 80, 40),
                    accent=(60, 35, 20),
                ),
                preset(
                    "beanie_red",
                    "a red knitted beanie",
                    style="beanie",
                    color=(200, 30, 40),
                    accent=(250, 250, 250),
                ),
                preset(
                    "beanie_blue",
                    "a blue beanie with a pompom",
                    style="beanie",
                    color=(40, 80, 200),
                    accent=(255, 220, 40),
                ),
                preset(
                    "party_blue",
                    "a blue party hat",
                    style="party",
                    color=(50, 110, 255),
                    accent=(255, 220, 0),
                ),
                preset(
                    "party_pink",
                    "a pink party hat",
                    style="party",
                    color=(255, 90, 180),
                    accent=(90, 220, 255),
                ),
                preset(
                    "wizard_purple",
                    "a purple wizard hat with stars",
                    style="wizard",
                    color=(90, 40, 170),
                    accent=(255, 200, 40),
                ),
                preset(
                    "cap_blue", "a blue baseball cap", style="cap", color=(30, 80, 200), accent=(20, 40, 120)
                ),
                preset(
                    "cap_red", "a red baseball cap", style="cap", color=(210, 30, 40), accent=(120, 15, 20)
                ),
                preset("chef_white", "a white chef's hat", style="chef"),
            ),
        ),
        FamilySpec(
            "crown",
            "crown",
            "edit",
            "add",
            a,
            (
                preset("king_gold", "a golden king's crown with jewels", style="king", metal="gold"),
                preset(
                    "king_silver",
                    "a silver crown with blue jewels",
                    style="king",
                    metal="silver",
                    jewel=(30, 80, 230),
                ),
                preset(
                    "king_rose_gold",
                    "a rose-gold crown",
                    style="king",
                    metal="rose_gold",
                    jewel=(120, 20, 160),
                ),
                preset(
                    "tiara_silver",
                    "a sparkling silver tiara",
                    style="tiara",
                    metal="silver",
                    jewel=(80, 180, 255),
                ),
                preset("tiara_gold", "a gold tiara with a red gem", style="tiara", metal="gold"),
                preset("laurel_gold", "a golden laurel wreath", style="laurel", metal="gold"),
            ),
        ),
        FamilySpec(
            "animal_ears",
            "ears",
            "edit",
            "add",
            a,
            (
                preset("cat_black", "black cat ears", style="cat"),
                preset("cat_white", "white cat ears", style="cat", color=(245, 245, 245)),
                preset("bunny_white", "white bunny ears", style="bunny", color=(250, 250, 250)),
                preset(
                    "bear_brown",
                    "brown teddy-bear ears",
                    style="bear",
                    color=(120, 70, 40),
                    inner=(200, 150, 110),
                ),
                preset(
                    "fox_orange", "orange fox ears", style="fox", color=(230, 110, 30), inner=(255, 255, 255)
                ),
                preset("mouse_grey", "big grey mouse ears", style="mouse", color=(150, 150, 160)),
                preset("puppy_brown", "floppy brown puppy ears", style="puppy", color=(130, 85, 50)),
            ),
        ),
        FamilySpec(
            "horns",
            "horns",
            "edit",
            "add",
            a,
            (
                preset("devil_red", "red devil horns", style="devil"),
                preset("devil_black", "black demon horns", style="devil", color=(35, 30, 35)),
                preset("unicorn_gold", "a golden unicorn horn", style="unicorn", color=(255, 210, 90)),
                preset("unicorn_pink", "a pastel pink unicorn horn", style="unicorn", color=(255, 170, 220)),
                preset("antlers_brown", "reindeer antlers", style="antlers", color=(120, 80, 40)),
            ),
        ),
        FamilySpec(
            "halo",
            "halo",
            "edit",
            "add",
            a,
            (
                preset("gold", "a glowing golden halo", color=(255, 215, 90)),
                preset("white", "a glowing white angel halo", color=(240, 245, 255)),
            ),
        ),
        FamilySpec(
            "mustache",
            "mustache",
            "edit",
            "add",
            a,
            (
                preset(
                    "handlebar_black", "a black handlebar mustache", style="handlebar", color=(25, 20, 15)
                ),
                preset("handlebar_brown", "a brown handlebar mustache", style="handlebar"),
                preset("chevron_black", "a thick black mustache", style="chevron", color=(25, 20, 15)),
                preset("pencil_black", "a thin pencil mustache", style="pencil", color=(25, 20, 15)),
                preset("walrus_ginger", "a big ginger walrus mustache", style="walrus", color=(200, 110, 50)),
            ),
        ),
        FamilySpec(
            "nose_sticker",
            "nose",
            "edit",
            "add",
            a,
            (
                preset("clown_red", "a red clown nose", style="clown"),
                preset("pig_pink", "a pink pig snout", style="pig", color=(250, 160, 180)),
                preset("dog_black", "a black dog nose", style="dog", color=(20, 20, 20)),
                preset("cat_pink", "a pink cat nose with whiskers", style="cat", color=(255, 140, 170)),
            ),
        ),
        FamilySpec(
            "cheek_stickers",
            "cheek",
            "edit",
            "add",
            a,
            (
                preset("hearts_pink", "pink heart stickers on both cheeks", shape="heart"),
                preset("hearts_red", "red heart stickers on the cheeks", shape="heart", color=(230, 20, 40)),
                preset("stars_gold", "gold star stickers on the cheeks", shape="star", color=(255, 205, 0)),
                preset(
                    "flowers_purple",
                    "purple flower stickers on the cheeks",
                    shape="flower",
                    color=(160, 110, 255),
                ),
                preset(
                    "sparkles_blue",
                    "blue sparkle stickers on the cheeks",
                    shape="sparkle",
                    color=(110, 210, 255),
                ),
            ),
        ),
        FamilySpec(
            "face_tattoo",
            "face_tattoo",
            "edit",
            "add",
            a,
            (
                preset("teardrop", "teardrop tattoos under the eye", style="teardrop"),
                preset("stars", "small star tattoos by the eye", style="stars"),
                preset("tribal", "a tribal tattoo on the side of the face", style="tribal"),
                preset(
                    "hearts_red", "little red heart tattoos on the face", style="hearts", color=(190, 20, 40)
                ),
            ),
        ),
        FamilySpec(
            "eye_mask",
            "eye_mask",
            "edit",
            "add",
            a,
            (
                preset("domino_black", "a black superhero eye mask", style="domino"),
                preset(
                    "domino_red",
                    "a red superhero mask",
                    style="domino",
                    color=(200, 20, 30),
                    trim=(255, 210, 0),
                ),
                preset(
                    "masquerade_red",
                    "a red and gold masquerade mask",
                    style="masquerade",
                    color=(150, 20, 60),
                ),
                preset(
                    "masquerade_black",
                    "a black and silver masquerade mask",
                    style="masquerade",
                    trim=(220, 220, 230),
                ),
                preset("bandit", "a black bandit mask over the eyes", style="bandit"),
            ),
        ),
        FamilySpec(
            "flower_crown",
            "flower_crown",
            "edit",
            "add",
            a,
            (
                preset("spring", "a crown of spring flowers", palette="spring"),
                preset("roses", "a crown of red roses", palette="roses"),
                preset("sunflowers", "a sunflower crown", palette="sunflower"),
                preset("lavender", "a lavender flower crown", palette="lavender"),
            ),
        ),
    ]


def _modifies() -> list[FamilySpec]:
    m = "modify"
    return [
        FamilySpec(
            "hair_recolor",
            "hair_recolor",
            "edit",
            m,
            (
                "dye the hair {desc}",
                "change the person's hair colour to {desc}",
                "make their hair {desc}",
            ),
            (
                *(
                    preset(slug, w, color=c)
                    for slug, w, c in (
                        ("pink", "pink", (255, 80, 170)),
                        ("blue", "electric blue", (40, 110, 255)),
                        ("purple", "purple", (150, 60, 220)),
                        ("platinum", "platinum blonde", (240, 230, 200)),
                        ("red", "fiery red", (220, 40, 30)),
                        ("green", "green", (60, 200, 80)),
                        ("silver", "silver grey", (200, 200, 210)),
                        ("orange", "orange", (255, 130, 30)),
                        ("teal", "teal", (0, 180, 170)),
                    )
                ),
                preset(
                    "ombre_pink_purple", "a pink-to-purple ombre", color=(255, 90, 170), color2=(120, 60, 230)
                ),
                preset(
                    "ombre_blue_green", "a blue-to-green ombre", color=(40, 110, 255), color2=(60, 220, 120)
                ),
            ),
        ),
        FamilySpec(
            "clothing_recolor",
            "clothing_recolor",
            "edit",
            m,
            (
                "make the shirt {desc}",
                "change the colour of the person's clothes to {desc}",
                "recolour the top {desc}",
            ),
            tuple(
                preset(slug, w, color=c)
                for slug, w, c in (
                    ("red", "red", (220, 30, 40)),
                    ("yellow", "yellow", (250, 215, 40)),
                    ("green", "green", (40, 170, 70)),
                    ("blue", "royal blue", (30, 70, 210)),
                    ("white", "white", (245, 245, 245)),
                    ("pink", "pink", (250, 120, 180)),
                    ("purple", "purple", (120, 50, 180)),
                    ("orange", "orange", (255, 130, 20)),
                )
            ),
        ),
        FamilySpec(
            "clothing_pattern",
            "clothing",
            "edit",
            m,
            (
                "put {desc} on the person's shirt",
                "change the clothes to {desc}",
                "print {desc} on the top",
            ),
            (
                preset("stripes_navy", "navy and white stripes", pattern="stripes"),
                preset("stripes_red", "red and white stripes", pattern="stripes", color2=(210, 20, 40)),
                preset("polka_red", "white polka dots on red", pattern="polka_dots", color2=(220, 30, 40)),
                preset("polka_black", "white polka dots on black", pattern="polka_dots", color2=(15, 15, 15)),
                preset(
                    "checker_bw",
                    "a black and white checker pattern",
                    pattern="checker",
                    color=(20, 20, 20),
                    color2=(245, 245, 245),
                ),
                preset(
                    "checker_red",
                    "a red and black check pattern",
                    pattern="checker",
                    color=(15, 15, 15),
                    color2=(200, 20, 30),
                ),
                preset(
                    "zigzag_yellow",
                    "a yellow and black zigzag pattern",
                    pattern="zigzag",
                    color=(255, 210, 0),
                    color2=(20, 20, 20),
                ),
                preset(
                    "diagonal_green",
                    "green and white diagonal stripes",
                    pattern="diagonal",
                    color2=(30, 150, 70),
                ),
            ),
        ),
        FamilySpec(
            "lipstick",
            "lipstick",
            "edit",
            m,
            (
                "put {desc} lipstick on",
                "make the lips {desc}",
                "apply {desc} lipstick to the person",
            ),
            tuple(
                preset(slug, w, color=c)
                for slug, w, c in (
                    ("red", "classic red", (200, 15, 45)),
                    ("pink", "bright pink", (240, 70, 150)),
                    ("plum", "dark plum", (110, 20, 70)),
                    ("nude", "nude", (190, 120, 100)),
                    ("black", "black", (30, 20, 25)),
                    ("blue", "blue", (40, 60, 200)),
                    ("coral", "coral", (250, 110, 90)),
                )
            ),
        ),
        FamilySpec(
            "eyeshadow",
            "eyeshadow",
            "edit",
            m,
            (
                "add {desc} eyeshadow",
                "put {desc} eye makeup on the lids",
                "make the eyelids {desc}",
            ),
            tuple(
                preset(slug, w, color=c)
                for slug, w, c in (
                    ("purple", "purple", (130, 40, 170)),
                    ("blue", "bright blue", (40, 100, 230)),
                    ("gold", "shimmering gold", (230, 180, 60)),
                    ("smoky", "smoky black", (40, 35, 40)),
                    ("green", "emerald green", (30, 160, 90)),
                    ("pink", "pink", (240, 100, 170)),
                )
            ),
        ),
        FamilySpec(
            "blush",
            "blush",
            "edit",
            m,
            (
                "add {desc} blush on the cheeks",
                "give the person rosy {desc} cheeks",
                "apply {desc} blush",
            ),
            tuple(
                preset(slug, w, color=c)
                for slug, w, c in (
                    ("pink", "pink", (245, 90, 120)),
                    ("peach", "peach", (250, 140, 100)),
                    ("red", "deep red", (220, 40, 50)),
                )
            ),
        ),
        FamilySpec(
            "face_paint",
            "face_paint",
            "edit",
            m,
            ("paint the face {look}", "add {style} face paint", "give the person {style} face makeup"),
            tuple(
                Preset(slug, params, {"look": look, "style": style})
                for slug, look, style, params in (
                    (
                        "blue",
                        "solid blue like an avatar",
                        "solid blue",
                        {"style": "solid", "color": (40, 110, 230)},
                    ),
                    ("green", "solid green", "bright green", {"style": "solid", "color": (60, 170, 60)}),
                    ("gold", "metallic gold", "metallic gold", {"style": "solid", "color": (230, 180, 60)}),
                    ("half_red", "half red", "half-face red", {"style": "half", "color": (220, 30, 30)}),
                    ("tiger", "like a tiger", "tiger-stripe", {"style": "tiger"}),
                    ("skull", "like a skull", "sugar-skull", {"style": "skull"}),
                    ("clown", "like a clown", "clown", {"style": "clown"}),
                    ("zombie", "like a zombie", "green zombie", {"style": "zombie"}),
                )
            ),
        ),
        FamilySpec(
            "glowing_eyes",
            "glowing_eyes",
            "edit",
            m,
            (
                "make the eyes glow {color}",
                "give the person glowing {color} eyes",
                "supernatural {color} glowing eyes",
            ),
            color_presets(["red", "blue", "green", "purple", "gold"]),
        ),
        FamilySpec(
            "skin_smoothing",
            "skin_smoothing",
            "edit",
            m,
            (
                "{desc} smooth the skin",
                "beauty filter: {desc} soften the face",
                "retouch the face skin {desc}",
            ),
            (
                preset("light", "lightly", strength=0.55),
                preset("strong", "strongly", strength=1.0, brighten=0.1),
            ),
        ),
    ]


def region_of(family: str, params: dict[str, Any]) -> str:
    """A category's region: its ``target`` when it has one, else the family's anchor region."""
    target = params.get("target")
    if target in (*REGION_NAMES, "scene"):
        return str(target)
    return FAMILIES[family].region


def expand(spec: FamilySpec) -> list[Category]:
    """All categories of one family spec (and the remove twins of add edits)."""
    out = []
    for p in spec.presets:
        cid = f"{spec.prefix}_{p.slug}" if p.slug else spec.prefix
        descriptions = tuple(dict.fromkeys(t.format(**p.words).strip() for t in spec.templates))
        region = region_of(spec.family, p.params)
        out.append(Category(cid, spec.family, spec.kind, region, descriptions, dict(p.params), spec.op))
        if spec.op == "add":
            # "a black top hat" -> "remove the black top hat"
            words = {**p.words, "thing": re.sub(r"^(a|an|the|some)\s+", "", p.words.get("desc", ""))}
            removes = tuple(dict.fromkeys(t.format(**words) for t in spec.remove_templates or ADD_REMOVE))
            out.append(
                Category(f"remove_{cid}", spec.family, "edit", region, removes, dict(p.params), "remove")
            )
    return out


def build_catalog() -> list[Category]:
    """Every category, in a stable order (effects, then adds with their removes, then modifies)."""
    categories = [c for spec in (*_effects(), *_adds(), *_modifies()) for c in expand(spec)]
    seen: set[str] = set()
    for c in categories:
        if c.id in seen:
            raise ValueError(f"duplicate category id {c.id!r}")
        seen.add(c.id)
    return categories
