"""Answers on disk: a PNG panel per statement and a JSON object per statement.

For statement number k, ``DIR/kk_<kind>.png`` is the panel (the factual image first, then the
drawn images, each with its labels written under it), and ``DIR/kk/`` holds each image as a
64x64 binary PNG (0/255) and each probability map as an 8-bit PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from engine.images import save_png, to_uint8
from engine.query.runner import Answer, Sample

ZOOM = 2
CAPTION = 74  # pixels of text under each tile


def write(answers: list[Answer], out: str | Path) -> list[dict]:
    """Write every answer's files under ``out``; return the JSON-ready dict of each."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return [_write_one(k, answer, out) for k, answer in enumerate(answers, 1)]


def _write_one(k: int, answer: Answer, out: Path) -> dict:
    folder = out / f"{k:02d}"
    record = {
        "kind": answer.kind,
        "statement": answer.statement,
        "line": answer.line,
        "evidence": answer.evidence,
        "intervention": answer.intervention,
        "inferred": answer.inferred,
    }
    if answer.factual is not None:
        record["factual"] = _files(answer.factual, folder, "factual")
    record["samples"] = [_files(s, folder, f"sample_{j:03d}") for j, s in enumerate(answer.samples)]
    tiles = ([("factual", answer.factual)] if answer.factual is not None else []) + [
        (f"{answer.kind[:14]} {j + 1}", s) for j, s in enumerate(answer.samples)
    ]
    if any(s.image is not None for _, s in tiles):
        record["panel"] = str(panel(tiles, out / f"{k:02d}_{answer.kind}.png"))
    return record


def _files(sample: Sample, folder: Path, stem: str) -> dict:
    record = {"labels": sample.labels}
    if sample.image is not None:
        record["image"] = str(save_png(sample.image, folder / f"{stem}.png"))
    if sample.mean is not None:
        record["mean"] = str(save_png(sample.mean, folder / f"{stem}_mean.png"))
    return record


def panel(tiles: list[tuple[str, Sample]], path: Path, columns: int = 8) -> Path:
    """A row-major grid of enlarged images, each captioned with its title and labels."""
    size = 64 * ZOOM
    width, height = size + 8, size + CAPTION
    rows = -(-len(tiles) // columns)
    canvas = Image.new("L", (min(columns, len(tiles)) * width, rows * height), 255)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for i, (title, sample) in enumerate(tiles):
        r, c = divmod(i, columns)
        x, y = c * width + 4, r * height + 2
        image = sample.image if sample.image is not None else np.zeros((64, 64))
        tile = Image.fromarray(to_uint8(image), mode="L").resize((size, size), Image.NEAREST)
        canvas.paste(tile, (x, y))
        text = [title] + [f"{n}={_short(v)}" for n, v in sample.labels.items()]
        draw.multiline_text((x, y + size + 2), "\n".join(text[:6]), fill=0, font=font, spacing=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


def _short(value) -> str:
    return value if isinstance(value, str) else f"{value:.3g}"
