"""Synthetic frontal (PA) chest radiographs with the five CheXpert findings as labels.

A scene: dark air above the shoulders, soft tissue, two dark lung fields with vascular
markings, ribs and clavicles, spine, the cardiomediastinal silhouette (trachea, aortic knob,
heart resting on the diaphragm), two hemidiaphragm domes and a gastric bubble under the left
one. Each finding is drawn independently when present:
- Atelectasis: a plate-like band in a lower zone, with volume loss (raised hemidiaphragm,
  mediastinum pulled toward that side).
- Cardiomegaly: heart wider than half the thorax (cardiothoracic ratio > 0.5).
- Consolidation: a dense patch in one lung, with air bronchograms.
- Edema: bilateral perihilar haze ("bat wings") and Kerley B lines.
- Pleural effusion: fluid at one or both bases, blunting the costophrenic angle, with a
  meniscus rising laterally.
A label reported uncertain (-1) is drawn, or not, at random and mildly, like a borderline
finding a radiologist hedged on. Image left is the patient's right. Lengths are in
normalised image units (the image spans [-1, 1]).
"""

from __future__ import annotations

import numpy as np
from tfx_plugins.datasets.synthetic_draw import Canvas, smoothstep, to_uint8, walks

FINDINGS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
# Prevalence of each finding: CheXpert's order of magnitude, raised for the rare ones so that a
# small synthetic set has positives of every kind.
DEFAULT_PREVALENCE = (0.25, 0.2, 0.2, 0.25, 0.3)
UNCERTAIN = -1.0
SIDES = (-1.0, 1.0)  # image left (patient's right), image right (patient's left)


def draw_findings(rng: np.random.Generator, prevalence: np.ndarray, uncertain_fraction: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(reported, severity)`` for one image: reported 1 / 0 / -1 (uncertain) per finding and
    the severity it is drawn with (0: absent). A fixed number of draws, so labels never need
    the image."""
    presence, hedge, strength = rng.random(5), rng.random(5), rng.random(5)
    uncertain = hedge < uncertain_fraction
    present = np.where(uncertain, presence < 0.5, presence < prevalence)
    # Findings range from subtle to obvious; hedged ones are subtle.
    severity = np.where(uncertain, 0.05 + 0.25 * strength, 0.05 + 0.95 * strength**2) * present
    reported = np.where(uncertain, UNCERTAIN, present.astype(np.float64))
    return reported.astype(np.float32), severity.astype(np.float32)


class ChestScene:
    """Anatomy of one radiograph, with the geometric changes that findings cause."""

    def __init__(self, rng: np.random.Generator, severity: np.ndarray):
        atelectasis, cardiomegaly = float(severity[0]), float(severity[1])
        s = self.scale = rng.uniform(0.88, 1.02)
        self.cx, self.cy = rng.normal(0.0, 0.03), rng.normal(0.04, 0.03)
        self.half_thorax = 0.84 * s
        self.lung_width = rng.uniform(0.33, 0.37) * s
        self.lung_height = rng.uniform(0.62, 0.68) * s
        self.lung_y = self.cy - 0.12 * s
        base = self.lung_y + 0.98 * self.lung_height
        # Domes; the right hemidiaphragm (image left) sits a little higher.
        self.dome = {-1.0: base - rng.uniform(0.02, 0.06) * s, 1.0: base}
        self.dome_height = rng.uniform(0.09, 0.14) * s
        self.collapse_side = SIDES[int(rng.integers(0, 2))]
        if rng.random() < 0.15:  # normal variant: one hemidiaphragm a little high
            self.dome[SIDES[int(rng.integers(0, 2))]] -= rng.uniform(0.0, 0.06) * s
        self.mid = self.cx
        if atelectasis:  # volume loss
            self.dome[self.collapse_side] -= (0.02 + 0.1 * atelectasis) * s
            self.mid += self.collapse_side * 0.035 * atelectasis * s
        # Cardiothoracic ratio: above 0.5 is cardiomegaly; normal hearts crowd up to the limit.
        if cardiomegaly:
            self.heart_ratio = 0.5 + 0.08 * cardiomegaly
        else:
            self.heart_ratio = 0.498 - 0.1 * rng.random() ** 2
        width = self.heart_ratio * 2 * self.half_thorax
        right_share = rng.uniform(0.28, 0.36)  # most of the heart lies left of the midline
        self.heart_reach = {-1.0: right_share * width, 1.0: (1 - right_share) * width}
        self.heart_top = self.lung_y + rng.uniform(0.05, 0.15) * s
        self.knob = rng.uniform(0.04, 0.07) * s
        self.tissue = rng.uniform(0.72, 0.85)
        self.lung_air = rng.uniform(0.32, 0.56)
        self.softness = rng.uniform(0.015, 0.045)  # blur of the lung borders

    def lung_x(self, side: float) -> float:
        """Horizontal centre of the lung on ``side``."""
        return self.cx + side * 0.47 * self.scale

    def dome_y(self, x: np.ndarray, side: float) -> np.ndarray:
        """Upper edge of the hemidiaphragm on ``side``."""
        t = (x - self.lung_x(side) + side * 0.03 * self.scale) / (self.lung_width * 1.15)
        return self.dome[side] - self.dome_height * (1.0 - np.clip(t * t, 0.0, 1.0))

    def mediastinum(self, y: np.ndarray, side: float) -> np.ndarray:
        """Half-width of the cardiomediastinal silhouette on ``side`` at height ``y``."""
        s = self.scale
        half = 0.075 * s + np.zeros_like(y)
        if side > 0:  # aortic knob
            half = half + self.knob * np.exp(-((y - self.heart_top + 0.17 * s) / (0.06 * s)) ** 2)
        bottom = self.dome[1.0]
        t = np.clip((y - self.heart_top) / (bottom - self.heart_top), 0.0, 1.0)
        if side > 0:  # left heart border: slopes out to a rounded apex on the diaphragm
            profile = np.sqrt(1.0 - (1.0 - np.minimum(t / 0.85, 1.0)) ** 2)
        else:  # right heart border: a gentle convex curve
            profile = np.sin(np.pi * np.minimum(t, 0.999) * 0.5 + 0.25) ** 2
        reach = np.maximum(self.heart_reach[side] - 0.075 * s, 0.0)
        return half + reach * profile * (y > self.heart_top)


def lung_distance(scene: ChestScene, canvas: Canvas, side: float) -> np.ndarray:
    """Approximate signed distance to one lung field (< 0 inside)."""
    x, y = canvas.x, canvas.y
    u = (x - scene.lung_x(side)) * side / scene.lung_width  # > 0: lateral
    v = (y - scene.lung_y) / scene.lung_height  # -1 apex .. +1 base
    taper = 0.55 + 0.45 * smoothstep(-1.0, -0.2, v)  # narrow, rounded apex
    outline = (np.abs(u / taper) ** 2.4 + np.abs(np.minimum(v, 0.0)) ** 2.0
               + np.maximum(v, 0.0) ** 16.0) ** (1 / 2.4) - 1.0
    medial = scene.mid + side * scene.mediastinum(y, side) - x
    return np.maximum(np.maximum(outline * scene.lung_width, medial * side),
                      y - scene.dome_y(x, side))


def ribs(scene: ChestScene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Posterior ribs (arching out and down), fainter anterior ribs (sloping down toward the
    midline) and the clavicles: polylines ``(points (V, n, 2), widths (V,), strengths (V,))``."""
    t = np.linspace(0.0, 1.0, 24, dtype=np.float32)[None, :]
    s = scene.scale
    apex = scene.lung_y - scene.lung_height
    step = 0.19 * scene.lung_height
    sides = np.repeat(SIDES, 10)[:, None]
    y0 = apex + 0.03 * s + np.tile(np.arange(10), 2)[:, None] * step
    posterior = np.stack([scene.mid + sides * (0.06 + 0.86 * t) * s,
                          y0 - 0.10 * s * np.sin(np.pi * t * 0.9) + 0.30 * s * t**2], 2)
    sides = np.repeat(SIDES, 6)[:, None]
    y0 = apex + 0.05 * s + np.tile(np.arange(6), 2)[:, None] * 1.6 * step
    anterior = np.stack([scene.mid + sides * (0.90 - 0.62 * t) * s,
                         y0 - 0.04 * s * np.sin(np.pi * t) + 0.22 * s * t], 2)
    sides = np.array([[-1.0], [1.0]])
    clavicle_y = apex + 0.08 * s - 0.16 * s * t + 0.06 * s * t**2
    clavicles = np.stack([scene.mid + sides * (0.07 + 0.6 * t) * s,
                          np.repeat(clavicle_y, 2, 0)], 2)
    points = np.concatenate([posterior, anterior, clavicles]).astype(np.float32)
    widths = np.repeat([0.016 * s, 0.014 * s, 0.022 * s], [20, 12, 2]).astype(np.float32)
    strengths = np.repeat([0.035, 0.02, 0.10], [20, 12, 2]).astype(np.float32)
    return points, widths, strengths


class Lines:
    """Line deposits gathered by layer, splatted in one go."""

    LUNG, RIBS, BAND, BRONCHI = range(4)

    def __init__(self, canvas: Canvas):
        self.canvas, self.parts = canvas, []

    def add(self, layer: int, points: np.ndarray, widths, strengths, valid=None) -> None:
        """Polylines ``points (V, n, 2)`` with per-line or per-point widths and strengths."""
        valid = np.ones(points.shape[:2], bool) if valid is None else valid
        widths = np.broadcast_to(np.asarray(widths, np.float32).reshape(
            (-1, 1) if np.ndim(widths) == 1 else np.shape(widths)), valid.shape)
        strengths = np.asarray(strengths, np.float32)
        strengths = strengths[:, None] if strengths.ndim == 1 else strengths
        self.parts.append(self.canvas.line_ink(points, valid, widths, strengths,
                                               np.full(len(points), layer)))

    def render(self) -> np.ndarray:
        """(4, H, W) maps, one per layer."""
        merged = (np.concatenate(parts) for parts in zip(*self.parts, strict=True))
        return self.canvas.splat(*merged, count=4)


def render_chest(rng: np.random.Generator, severity: np.ndarray, size: int) -> np.ndarray:
    """One radiograph with findings of the given ``severity`` (0: absent): uint8 (1, H, W)."""
    atelectasis, _, consolidation, edema, effusion = (float(v) for v in severity)
    scene = ChestScene(rng, severity)
    s = scene.scale
    hila = {side: (scene.mid + side * 0.2 * s, scene.lung_y + 0.05 * s) for side in SIDES}
    count = 24  # vascular markings fanning out of each hilum
    starts = np.repeat(np.array([hila[-1.0], hila[1.0]], np.float32), count, axis=0)
    starts += rng.normal(0.0, 0.04 * s, starts.shape).astype(np.float32)
    fan = rng.uniform(-1.3, 1.3, 2 * count)
    headings = np.where(np.arange(2 * count) < count, np.pi - fan, fan)
    vessels = walks(rng, starts, headings, rng.uniform(0.15, 0.5, 2 * count),
                    rng.normal(0, 1.0, 2 * count), wiggle=0.7)
    vessel_strength = rng.uniform(0.03, 0.08)  # prominent markings in some normal lungs
    breast = rng.uniform(0.0, 0.07) if rng.random() < 0.4 else 0.0
    fissure = rng.uniform(0.04, 0.1) if rng.random() < 0.5 else 0.0  # normal minor fissure
    fissure_y = scene.lung_y + rng.uniform(-0.15, 0.05) * scene.lung_height
    nipples = rng.uniform(0.05, 0.1) if rng.random() < 0.3 else 0.0
    fat_pad = rng.uniform(0.3, 0.7) if rng.random() < 0.3 else 0.0  # blurs the cardiac apex
    patch_side = SIDES[int(rng.integers(0, 2))]
    patch_center = np.array([scene.lung_x(patch_side) + rng.uniform(-0.1, 0.1) * s,
                             scene.lung_y + rng.uniform(-0.4, 0.4) * scene.lung_height])
    patch_blobs = patch_center + rng.normal(0, 0.06 * s, (5, 2))
    patch_size = rng.uniform(0.04, 0.07, 5) * s
    bronchi = walks(rng, np.tile(patch_center.astype(np.float32), (3, 1)),
                    rng.uniform(0, 2 * np.pi, 3), np.full(3, 0.12 * s), np.zeros(3), wiggle=0.8)
    effusion_sides = [(-1.0,), (1.0,), SIDES][int(rng.integers(0, 3))]
    effusion_height = (0.015 + 0.22 * effusion) * s
    band_y = min(scene.lung_y + rng.uniform(0.2, 0.5) * scene.lung_height,
                 scene.dome[scene.collapse_side] - scene.dome_height - 0.06 * s)
    band_tilt = rng.uniform(-0.15, 0.15)
    band_length = rng.uniform(0.18, 0.30) * s
    kerley_y = rng.uniform(-0.2, -0.03, (2, 5)) * s
    exposure = rng.uniform(0.85, 1.15)
    gamma = rng.uniform(0.8, 1.2)
    blur = rng.uniform(0.0, 0.01)
    noise_level = rng.uniform(0.015, 0.045)
    # Everything above is drawn in the same order at every size; pixel noise comes last.
    canvas = Canvas(size, blur)
    x, y = canvas.x, canvas.y

    # Soft tissue everywhere but the air above the shoulders, thicker toward the midline.
    shoulders = scene.cy - 1.1 * s + 0.3 * s * smoothstep(0.4 * s, 1.0 * s, np.abs(x - scene.cx))
    body = canvas.edge(shoulders - y, soft=0.02)
    thickness = 1.0 - 0.45 * np.clip((x - scene.cx) / (1.1 * s), -1, 1) ** 2
    image = 0.04 + body * scene.tissue * thickness
    # Arms: a darker strip of air between each arm and the chest wall; humeral heads.
    gap = np.exp(-(((np.abs(x - scene.cx) - 0.95 * s) / (0.035 * s)) ** 2)) * smoothstep(
        scene.cy - 0.75 * s, scene.cy - 0.45 * s, y)
    image -= 0.25 * gap * body
    image += 0.12 * body * canvas.blobs([scene.cx - 0.9 * s, scene.cx + 0.9 * s],
                                        [scene.cy - 0.8 * s] * 2, 0.09 * s, 1.0)
    lungs = {side: canvas.edge(lung_distance(scene, canvas, side), soft=scene.softness)
             for side in SIDES}
    lung = lungs[-1.0] + lungs[1.0]
    trachea = canvas.edge(np.abs(x - scene.mid) - 0.03 * s, soft=0.01) * smoothstep(
        scene.heart_top - 0.15 * s, scene.heart_top - 0.3 * s, y)
    bubble = canvas.edge(np.sqrt(((x - scene.lung_x(1.0) + 0.05 * s) / 1.6) ** 2
                                 + (y - scene.dome[1.0] - 0.09 * s) ** 2) - 0.05 * s)
    spine = canvas.edge(np.abs(x - scene.mid) - 0.065 * s, soft=0.01)
    image += body * (spine * (0.035 + 0.01 * np.cos(y * (2 * np.pi / (0.11 * s))))
                     - 0.1 * trachea - 0.12 * bubble)

    # Findings that fill the air spaces raise the lung density toward that of soft tissue.
    filling = np.zeros_like(lung)
    if effusion:
        for side in effusion_sides:  # fluid with a meniscus, higher laterally
            lateral = np.clip((x - scene.mid) * side / (scene.half_thorax * 0.95), 0.0, 1.0)
            level = scene.dome[side] - effusion_height - (0.05 + 0.1 * effusion) * s * lateral**2
            filling += (0.5 + 0.5 * effusion) * lungs[side] * smoothstep(
                level - 0.02 * s, level + 0.05 * s, y)
    if edema:  # bilateral perihilar ("bat wing") haze
        for side in SIDES:
            hx, hy = hila[side]
            haze = np.exp(-((x - hx) / (0.22 * s)) ** 2 / 2 - ((y - hy) / (0.2 * s)) ** 2 / 2)
            filling += 0.35 * edema * lungs[side] * haze
    if atelectasis:  # the collapsed lower zone holds less air
        filling += 0.3 * atelectasis * lungs[scene.collapse_side] * smoothstep(
            scene.lung_y, scene.dome[scene.collapse_side], y)
    if fat_pad:
        apex_x = scene.mid + scene.heart_reach[1.0]
        filling += fat_pad * lungs[1.0] * canvas.blobs([apex_x], [scene.dome[1.0] - 0.06 * s],
                                                       0.07 * s, 1.0)
    patch = 0.0
    if consolidation:
        patch = 1.0 - np.exp(-canvas.blobs(patch_blobs[:, 0], patch_blobs[:, 1],
                                           patch_size * (0.5 + 0.5 * consolidation), 2.5))
        filling += 0.7 * consolidation * patch * lungs[patch_side]
    # More air (darker) toward the apices, less at the bases.
    air = scene.lung_air * (1.0 - 0.25 * smoothstep(scene.lung_y - 0.5 * scene.lung_height,
                                                     scene.dome[1.0], y))
    image -= air * lung * (1.0 - np.minimum(filling, 1.0))
    if nipples:
        image += nipples * canvas.blobs([scene.cx - 0.42 * s, scene.cx + 0.42 * s],
                                        [scene.cy + 0.3 * s] * 2, 0.018 * s, 1.0) * body
    if breast:
        image += breast * canvas.blobs([scene.cx - 0.45 * s, scene.cx + 0.45 * s],
                                       [scene.cy + 0.35 * s] * 2, 0.2 * s, 1.0) * body

    lines = Lines(canvas)
    lines.add(Lines.LUNG, vessels[0], np.linspace(0.008, 0.002, vessels[0].shape[1]) * s
              * np.ones((len(vessels[0]), 1)), np.full(len(vessels[0]), vessel_strength),
              vessels[2])
    if fissure:  # a thin horizontal line in the right lung
        start = scene.mid - 0.2 * s
        points = np.array([[[start, fissure_y], [start - 0.3 * s, fissure_y + 0.02 * s]]])
        lines.add(Lines.LUNG, points.astype(np.float32), [0.004 * s], [fissure])
    lines.add(Lines.RIBS, *ribs(scene))
    if consolidation:  # air bronchograms: dark branching tubes inside the patch
        lines.add(Lines.BRONCHI, bronchi[0], np.full(3, 0.006 * s), np.full(3, 0.06), bronchi[2])
    if edema:  # Kerley B lines: short horizontal septal lines at the lateral bases
        for index, side in enumerate(SIDES):
            edge_x = scene.lung_x(side) + side * scene.lung_width * 0.95
            heights = scene.dome[side] + kerley_y[index]
            points = np.stack([np.stack([np.full(5, edge_x), heights], 1),
                               np.stack([np.full(5, edge_x - side * 0.06 * s), heights], 1)], 1)
            lines.add(Lines.LUNG, points.astype(np.float32), np.full(5, 0.004 * s),
                      np.full(5, 0.08 * edema))
    if atelectasis:  # plate-like band in the collapsed lower zone
        t = np.array([-0.5, 0.5], np.float32) * band_length
        band_x = scene.lung_x(scene.collapse_side) + scene.collapse_side * 0.1 * s
        points = np.stack([band_x + t, band_y + band_tilt * t], 1)
        lines.add(Lines.BAND, points[None].astype(np.float32), [0.02 * s], [0.3 * atelectasis])
    maps = lines.render()
    image += maps[Lines.LUNG] * lung + maps[Lines.RIBS] * (0.25 + lung) * body
    image += maps[Lines.BAND] * lungs[scene.collapse_side] - maps[Lines.BRONCHI] * patch

    image = np.clip(image * exposure, 0.0, 1.0) ** gamma
    image += rng.normal(0.0, noise_level, image.shape).astype(np.float32)
    return to_uint8(image)[None]
