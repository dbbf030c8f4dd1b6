"""Synthetic colour fundus photographs graded for diabetic retinopathy (DR grades 0-4).

A scene: dark surround, orange-red fundus disc with vignetting and choroidal texture, a
bright optic disc on the left or right, a darker macula, branching arteries and veins; then
the lesions of the grade (international DR scale):
grade 1 a few microaneurysms; 2 more microaneurysms, blot haemorrhages, hard exudates,
sometimes cotton-wool spots; 3 many haemorrhages in all four quadrants and venous beading;
4 neovascularisation (fine tangled vessels) or a pre-retinal haemorrhage. Drusen and camera
dust appear at every grade, so a dark or yellow spot alone is not the answer.
Lengths are in normalised image units (the image spans [-1, 1]).
"""

from __future__ import annotations

import numpy as np
from tfx_plugins.datasets.synthetic_draw import Canvas, smoothstep, to_uint8, walks

GRADE_NAMES = ("0 no DR", "1 mild", "2 moderate", "3 severe", "4 proliferative")
# EyePACS-like grade frequencies (Kaggle training labels: about 73 / 7 / 15 / 2.5 / 2.5 %).
DEFAULT_GRADE_FREQUENCIES = (0.73, 0.07, 0.15, 0.025, 0.025)
STEP = 0.02  # vessel control-point spacing

VEIN = np.array([0.42, 0.07, 0.06], np.float32)
ARTERY = np.array([0.62, 0.15, 0.09], np.float32)
BLOOD = np.array([0.36, 0.03, 0.03], np.float32)
EXUDATE = np.array([1.00, 0.93, 0.42], np.float32)
DRUSEN = np.array([0.95, 0.74, 0.42], np.float32)
COTTON_WOOL = np.array([0.97, 0.88, 0.80], np.float32)
DISC = np.array([1.00, 0.86, 0.58], np.float32)
CUP = np.array([1.00, 0.96, 0.82], np.float32)


def draw_grade(rng: np.random.Generator, cumulative: np.ndarray) -> int:
    """The DR grade of one image: one uniform draw (so labels never need the image)."""
    return int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))


class FundusScene:
    """Geometry shared by the anatomy and the lesions of one image."""

    def __init__(self, rng: np.random.Generator):
        self.side = 1.0 if rng.random() < 0.5 else -1.0  # optic disc on the right (+1) or left
        self.center = rng.normal(0.0, 0.015, 2)
        self.radius = rng.uniform(0.90, 0.97)
        self.disc = self.center + np.array([self.side * rng.uniform(0.44, 0.52),
                                            rng.normal(-0.02, 0.04)])
        self.disc_radius = rng.uniform(0.11, 0.14)
        self.macula = self.center + np.array([-self.side * rng.uniform(0.02, 0.10),
                                              rng.normal(0.04, 0.03)])

    def random_points(self, rng: np.random.Generator, count: int, quadrant: int | None = None,
                      spread: float = 0.82) -> np.ndarray:
        """Uniform points on the fundus away from its rim, in one quadrant (0-3) or anywhere."""
        radius = self.radius * spread * np.sqrt(rng.random(count))
        if quadrant is None:
            angle = rng.uniform(0, 2 * np.pi, count)
        else:
            angle = (quadrant + rng.random(count)) * (np.pi / 2)
        return self.center + np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1)


class Vessels:
    """A batch of vessels as padded polylines, with widths (Gaussian sigma) and kind."""

    def __init__(self, points, headings, valid, widths, vein):
        self.points, self.headings, self.valid = points, headings, valid
        self.widths, self.vein = widths, vein


def grow(rng: np.random.Generator, scene: FundusScene, starts, headings, lengths, curvatures,
         widths, vein, wiggle: float = 0.35) -> Vessels:
    """Tapering vessels that stop at the rim of the fundus."""
    points, angles, valid = walks(rng, np.asarray(starts, np.float32), headings, lengths,
                                  curvatures, wiggle, STEP)
    inside = np.linalg.norm(points - scene.center, axis=2) < scene.radius * 0.99
    valid &= np.cumprod(inside, axis=1).astype(bool)
    along = np.arange(points.shape[1])[None, :] * STEP / np.maximum(lengths[:, None], STEP)
    taper = widths[:, None] * (1.0 - 0.55 * np.clip(along, 0.0, 1.0))
    return Vessels(points, angles, valid, taper.astype(np.float32), vein)


def branch(rng: np.random.Generator, scene: FundusScene, parents: Vessels, per_parent: int,
           scale: float) -> Vessels:
    """``per_parent`` side branches off each parent, alternating sides."""
    count = len(parents.vein)
    lengths = parents.valid.sum(axis=1) * STEP
    fraction = np.sort(rng.uniform(0.1, 0.9, (count, per_parent)), axis=1)
    last = parents.valid.shape[1] - 1
    index = np.minimum((fraction * lengths[:, None] / STEP).astype(int), last)
    rows = np.repeat(np.arange(count)[:, None], per_parent, axis=1)
    side = np.where(rng.random((count, 1)) < 0.5, 1.0, -1.0) * (-1.0) ** np.arange(per_parent)
    heading = parents.headings[rows, index] + side * rng.uniform(0.5, 1.0, (count, per_parent))
    length = (lengths[:, None] * scale * (1.5 - fraction)
              * rng.uniform(0.6, 1.0, (count, per_parent)))
    curvature = rng.normal(0.0, 1.0, (count, per_parent))
    keep = (parents.valid[rows, index] & (length > 2 * STEP)).ravel()
    return grow(rng, scene, parents.points[rows, index].reshape(-1, 2)[keep],
                heading.ravel()[keep], length.ravel()[keep], curvature.ravel()[keep],
                (parents.widths[rows, index] * 0.62).ravel()[keep],
                parents.vein[rows.ravel()[keep]], wiggle=0.25)


def vessel_tree(rng: np.random.Generator, scene: FundusScene, beading: float) -> list[Vessels]:
    """Arteries and veins: four arcades from the disc (each an artery and a vein), branching
    twice, plus small macular branches; main veins beaded by ``beading`` (0: none)."""
    toward_macula = np.pi if scene.side > 0 else 0.0
    vertical = np.repeat([-1.0, 1.0], 4)  # superior (up) / inferior
    temporal = np.tile(np.repeat([True, False], 2), 2)
    vein = np.tile([True, False], 4)
    turn = scene.side * vertical
    # All trunks leave the disc almost vertically; temporal ones arc round the macula.
    heading = np.where(temporal,
                       toward_macula - turn * (np.pi / 2 - rng.uniform(0.2, 0.45, 8)),
                       toward_macula + np.pi + turn * (np.pi / 2 - rng.uniform(0.3, 0.6, 8)))
    heading += np.where(vein, 0.1, -0.1) * vertical
    curvature = np.where(temporal, turn * rng.uniform(1.0, 1.5, 8),
                         -turn * rng.uniform(0.6, 1.2, 8))
    length = np.where(temporal, rng.uniform(1.1, 1.5, 8), rng.uniform(0.5, 0.8, 8))
    width = np.where(vein, 0.016, 0.011)
    direction = np.stack([np.cos(heading), np.sin(heading)], 1)
    main = grow(rng, scene, scene.disc + 0.25 * scene.disc_radius * direction, heading, length,
                curvature, width, vein)
    if beading:  # venous beading: sausage-like periodic widening of the main veins
        period = rng.uniform(2.5, 4.0, (8, 1))
        phase = rng.uniform(0, 2 * np.pi, (8, 1))
        steps = np.arange(main.widths.shape[1])
        wave = np.maximum(np.sin(steps * (2 * np.pi) / period + phase), 0.0) ** 2
        main.widths *= np.where(vein[:, None], 1.0 + beading * wave, 1.0).astype(np.float32)
    first = branch(rng, scene, main, 4, 0.35)
    second = branch(rng, scene, first, 2, 0.45)
    count = int(rng.integers(2, 5))  # small macular branches
    small = grow(rng, scene, np.repeat(scene.disc[None, :], count, 0),
                 toward_macula + rng.normal(0.0, 0.35, count), rng.uniform(0.25, 0.4, count),
                 np.zeros(count), np.full(count, 0.006), rng.random(count) < 0.5)
    return [main, first, second, small]


class Lesions:
    """Lesion parameters gathered per layer before rendering."""

    LAYERS = ("red", "exudate", "cotton", "drusen", "dust")

    def __init__(self):
        self.blobs: dict[str, list[np.ndarray]] = {name: [] for name in self.LAYERS}
        self.tangles: list = []  # neovascularisation: (points (V, n, 2), valid (V, n))
        self.preretinal: list[tuple[np.ndarray, float]] = []

    def add(self, layer: str, points: np.ndarray, sigma, strength) -> None:
        """Gaussian blobs at ``points`` with widths ``sigma`` and peak ``strength``."""
        count = len(points)
        self.blobs[layer].append(np.stack([
            points[:, 0], points[:, 1],
            np.broadcast_to(np.asarray(sigma, np.float64), (count,)),
            np.broadcast_to(np.asarray(strength, np.float64), (count,))], 1))

    def render(self, canvas: Canvas) -> dict[str, np.ndarray]:
        """Density map of every layer that has blobs."""
        names = [name for name in self.LAYERS if self.blobs[name]]
        if not names:
            return {}
        tables = [np.concatenate(self.blobs[name]) for name in names]
        table = np.concatenate(tables)
        layer = np.repeat(np.arange(len(names)), [len(t) for t in tables])
        maps = canvas.blobs(table[:, 0], table[:, 1], table[:, 2], table[:, 3], layer, len(names))
        return dict(zip(names, maps, strict=True))


def add_lesions(rng: np.random.Generator, scene: FundusScene, grade: int,
                lesions: Lesions) -> None:
    """The lesions that define ``grade``, plus grade-independent confounders."""
    def microaneurysms(count: int) -> None:
        points = scene.random_points(rng, count, spread=0.7)
        lesions.add("red", points, rng.uniform(0.007, 0.011, count), rng.uniform(1.6, 2.6, count))

    def haemorrhages(count: int, quadrant: int | None = None) -> None:
        points = scene.random_points(rng, count, quadrant)
        lesions.add("red", points, rng.uniform(0.012, 0.028, count), rng.uniform(0.6, 3.0, count))

    def exudate_clusters(clusters: int) -> None:
        for _ in range(clusters):
            center = scene.random_points(rng, 1, spread=0.55)[0]
            count = int(rng.integers(1, 7))
            points = center + rng.normal(0, rng.uniform(0.03, 0.07), (count, 2))
            lesions.add("exudate", points, rng.uniform(0.008, 0.018, count),
                        rng.uniform(1.5, 2.5, count))

    if grade == 1:
        microaneurysms(int(rng.integers(1, 6)))
    elif grade == 2:  # "more than just microaneurysms": some of haemorrhages, exudates, CWS
        microaneurysms(int(rng.integers(2, 12)))
        kinds = rng.random(3) < (0.7, 0.5, 0.25)
        if not kinds.any():
            kinds[int(rng.integers(0, 3))] = True
        if kinds[0]:
            for quadrant in rng.choice(4, size=int(rng.integers(1, 3)), replace=False):
                haemorrhages(int(rng.integers(1, 3)), int(quadrant))
        if kinds[1]:
            exudate_clusters(int(rng.integers(1, 3)))
        if kinds[2]:
            points = scene.random_points(rng, int(rng.integers(1, 3)), spread=0.6)
            lesions.add("cotton", points, rng.uniform(0.025, 0.04), rng.uniform(0.4, 0.8))
    elif grade >= 3:
        severe = grade == 3 or rng.random() < 0.6
        microaneurysms(int(rng.integers(8, 20)))
        for quadrant in range(4):
            haemorrhages(int(rng.integers(4, 9) if severe else rng.integers(1, 4)), quadrant)
        exudate_clusters(int(rng.integers(1, 4)))
        points = scene.random_points(rng, int(rng.integers(1, 5)), spread=0.6)
        lesions.add("cotton", points, rng.uniform(0.03, 0.05), rng.uniform(0.6, 1.0))
    if grade == 4:
        if rng.random() < 0.75:
            neovascular_tangle(rng, scene, lesions)
        if rng.random() < 0.5 or not lesions.tangles:
            center = scene.random_points(rng, 1, spread=0.6)[0]
            lesions.preretinal.append((center, rng.uniform(0.10, 0.17)))
    if rng.random() < 0.4:  # drusen: small pale dots near the macula, any grade
        count = int(rng.integers(2, 12))
        points = scene.macula + rng.normal(0, 0.18, (count, 2))
        lesions.add("drusen", points, rng.uniform(0.008, 0.016, count),
                    rng.uniform(0.6, 1.2, count))
    count = int(rng.integers(0, 6))  # camera dust: faint dark smudges, any grade
    lesions.add("dust", scene.random_points(rng, count), rng.uniform(0.015, 0.045, count),
                rng.uniform(0.10, 0.35, count))


def neovascular_tangle(rng: np.random.Generator, scene: FundusScene, lesions: Lesions) -> None:
    """Fine, tortuous new vessels at the disc (NVD) or elsewhere (NVE), on a pale membrane."""
    if rng.random() < 0.5:
        center = scene.disc + rng.normal(0, 0.05, 2)
    else:
        center = scene.random_points(rng, 1, spread=0.65)[0]
    extent = rng.uniform(0.08, 0.13)
    count = int(rng.integers(8, 15))
    starts = (center + rng.normal(0, extent * 0.5, (count, 2))).astype(np.float32)
    points, _, valid = walks(rng, starts, rng.uniform(0, 2 * np.pi, count),
                             rng.uniform(0.12, 0.25, count), rng.normal(0, 12, count),
                             wiggle=4.0, step=0.008)
    lesions.tangles.append((points, valid))
    lesions.add("cotton", center[None, :], extent * 0.6, 0.35)


def render_fundus(rng: np.random.Generator, grade: int, size: int) -> np.ndarray:
    """One fundus image of DR ``grade``: uint8 (3, size, size)."""
    scene = FundusScene(rng)
    tint = rng.uniform(0.65, 1.1)  # fundus pigmentation
    base = np.array([0.95, 0.38 * rng.uniform(0.8, 1.2), 0.18 * rng.uniform(0.7, 1.3)],
                    np.float32) * tint
    texture_cells = rng.normal(0.0, 1.0, (9, 9)).astype(np.float32)
    tilt = rng.normal(0.0, 0.18, 2)
    beading = 0.9 if grade == 3 or (grade == 4 and rng.random() < 0.5) else 0.0
    vessels = vessel_tree(rng, scene, beading)
    lesions = Lesions()
    add_lesions(rng, scene, grade, lesions)
    blur = rng.uniform(0.0, 0.025)
    noise_level = rng.uniform(0.008, 0.03)
    # Everything above is drawn in the same order at every size; pixel noise comes last.
    canvas = Canvas(size, blur)
    x, y = canvas.x, canvas.y

    macula_d2 = (x - scene.macula[0]) ** 2 + (y - scene.macula[1]) ** 2
    macula = 0.30 * np.exp(-macula_d2 / (2 * 0.13**2)) + 0.25 * np.exp(-macula_d2 / (2 * 0.03**2))
    shade = (1.0 + 0.06 * canvas.smooth_noise(texture_cells)) * (1.0 - macula)
    image = (base * np.array([1.0, 0.85, 0.9], np.float32))[:, None, None] * shade
    image += (base * np.array([0.0, 0.15, 0.1], np.float32))[:, None, None] * (1.0 - macula)

    disc_distance = np.sqrt((x - scene.disc[0]) ** 2 + (y - scene.disc[1]) ** 2)
    cup_alpha = smoothstep(scene.disc_radius * 0.55, 0.0, disc_distance)
    mix(image, DISC, 0.9 * canvas.edge(disc_distance - scene.disc_radius))
    mix(image, CUP, 0.8 * cup_alpha)

    density = lesions.render(canvas)
    for layer, colour, opacity in (("drusen", DRUSEN, 0.55), ("exudate", EXUDATE, 0.95),
                                   ("cotton", COTTON_WOOL, 0.7)):
        if layer in density:
            mix(image, colour, opacity * (1.0 - np.exp(-density[layer])))
    over_disc = 0.9 * (1.0 - 0.5 * cup_alpha)  # vessels fade where they dive into the cup
    deposits = [canvas.line_ink(v.points, v.valid, v.widths, np.where(v.vein, 2.4, 2.2)[:, None],
                                v.vein.astype(int)) for v in vessels]
    lines = canvas.splat(*(np.concatenate(parts) for parts in zip(*deposits, strict=True)), count=2)
    mix(image, ARTERY, (1.0 - np.exp(-lines[0])) * over_disc)
    mix(image, VEIN, (1.0 - np.exp(-lines[1])) * over_disc)
    for points, valid in lesions.tangles:
        lines = canvas.polylines(points, valid, np.full(valid.shape, 0.0055, np.float32), 2.0)
        mix(image, ARTERY * 0.9, 0.85 * (1.0 - np.exp(-lines)))
    red = density.get("red", 0.0)
    for center, radius in lesions.preretinal:  # boat shape: flat top (fluid level), round below
        distance = np.sqrt((x - center[0]) ** 2 + (y - center[1]) ** 2) - radius
        red = red + 3.0 * canvas.edge(np.maximum(distance, center[1] - 0.35 * radius - y))
    if lesions.preretinal or "red" in density:
        mix(image, BLOOD, 0.95 * (1.0 - np.exp(-red)))
    if "dust" in density:
        image *= 1.0 - np.minimum(density["dust"], 0.5)

    r = np.sqrt((x - scene.center[0]) ** 2 + (y - scene.center[1]) ** 2) / scene.radius
    image *= (1.0 - 0.55 * r**3) * (1.0 + tilt[0] * x + tilt[1] * y) * canvas.edge(
        (r - 1.0) * scene.radius)
    image += rng.normal(0.0, noise_level, image.shape).astype(np.float32)
    return to_uint8(image)


def mix(image: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> None:
    """Alpha-blend ``colour`` over a (3, H, W) ``image`` in place, per-pixel ``alpha``."""
    image += (colour[:, None, None] - image) * alpha
