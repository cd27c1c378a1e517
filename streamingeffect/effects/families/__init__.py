"""Effect families grouped by theme; importing a module registers its families in ``FAMILIES``.

outline_glow: light around the silhouette    particles: sparkles, trails, confetti, hearts, bokeh, smoke
stickers: face-anchored accessories          face: makeup, face paint, glowing eyes, skin smoothing
color: recolours, patterns and colour looks  stylize: cartoon, pixelate, sketch, pop art, halftone, statue
glitch: RGB split, blocks, hologram, echoes  background: blur, replace, spotlight, mirror, film, digital rain
weather: rain, snow, lightning, fog
"""
