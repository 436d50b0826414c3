"""Answers on disk, on the terminal and in notebooks: one writer per answer kind.

Sample answers: for statement number k, ``DIR/kk_<kind>.png`` is the panel (the factual image
first, then the drawn images, each with its labels written under it), and ``DIR/kk/`` holds
each image as a binary PNG (0/255) and each probability map as an 8-bit PNG.

Population answers (a counterfactual over a selection): ``DIR/kk_population.npz`` holds every
unit (engine.query.population says what), ``DIR/kk_summary.json`` the summary and
``DIR/kk_examples.png`` the first units' factual, counterfactual and true images, in rows.

Numeric answers: a JSON record (kind, statement, line, value, stderr, method, draws, and
details such as snapped values, the @ form of PN/PS/PNS, the effective sample size); a
distribution also gets ``DIR/kk_distribution.png``, a bar chart (discrete) or a histogram of
the draws (real-valued). ``line`` is the terminal's line, ``html`` the notebook's view.
"""

from __future__ import annotations

import base64
import html as escape
import io
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from engine.files import write_atomic
from engine.images import grid, save_png, to_uint8
from engine.query.answers import Answer, NumericAnswer, PopulationAnswer, Sample

ZOOM = 2
TILE = 128  # side of each panel tile in pixels, whatever the image size
CAPTION = 74  # pixels of text under each tile


def write(answers: list[Answer | NumericAnswer], out: str | Path, place=lambda path: path) -> list[dict]:
    """Write every answer's files under ``out``; return the JSON-ready dict of each.

    ``place(path)`` is asked for every file before it is written (``engine.outputs.Output``
    records it in the folder's manifest, and refuses a file that cq did not write).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    writers = {NumericAnswer: _write_numeric, PopulationAnswer: _write_population, Answer: _write_one}
    return [writers[type(a)](k, a, out, place) for k, a in enumerate(answers, 1)]


# ---- numeric answers ------------------------------------------------------------------------


def record(answer: NumericAnswer) -> dict:
    """The JSON-ready record of a numeric answer (table keys as text: ``"heart"``, ``"0.5"``, ``"0.5, heart"``)."""
    value = {_key(k): v for k, v in answer.value.items()} if isinstance(answer.value, dict) else answer.value
    details = {k: ({_key(a): b for a, b in v.items()} if k == "stderrs" else v) for k, v in answer.details.items()}
    return {"kind": answer.kind, "statement": answer.statement, "line": answer.line, "value": value,
            "stderr": answer.stderr, "method": answer.method, "draws": answer.draws} | details


def _write_numeric(k: int, answer: NumericAnswer, out: Path, place) -> dict:
    result = record(answer)
    if answer.kind == "distribution":
        result["chart"] = str(chart(answer, place(out / f"{k:02d}_distribution.png")))
    return result


def line(answer: NumericAnswer) -> str:
    """``P(y > 0.5 | do(scale=1.0)) = 0.7342  exact enumeration`` (± stderr for Monte Carlo); a distribution as a table."""
    snapped = answer.details.get("snapped", {})
    note = "  (" + "; ".join(f"{a} read as {b}" for a, b in snapped.items()) + ")" if snapped else ""
    if answer.kind != "distribution":
        error = "" if answer.exact else f" ± {_number(answer.stderr)}"
        return f"{answer.statement} = {_number(answer.value)}{error}  {answer.method}{note}"
    rows = [f"{answer.statement}  {answer.method}{note}"]
    if "mean" in answer.value:
        rows += [f"    {k:<6} {_number(v)}" for k, v in answer.value.items()]
        return "\n".join(rows)
    width = max(len(_key(k)) for k in answer.value)
    stderrs = answer.details.get("stderrs", {})
    for key, p in answer.value.items():
        error = "" if answer.exact else f" ± {stderrs.get(key, 0):.4f}"
        rows.append(f"    {_key(key):>{width}}  {p:.4f}{error}  {'#' * round(40 * p)}")
    return "\n".join(rows)


def chart(answer: NumericAnswer, path: Path) -> Path:
    """A bar chart of a discrete distribution, or a histogram of a real quantity's draws (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
    if "mean" in answer.value and answer.samples is not None:
        ax.hist(answer.samples, bins=50, weights=answer.weights, color="#4c72b0")
        ax.set_ylabel("probability")
        ax.set_xlabel(", ".join(answer.details.get("nodes", [])))
    else:
        keys = [_key(k) for k in answer.value]
        ax.bar(range(len(keys)), list(answer.value.values()), color="#4c72b0")
        step = max(1, len(keys) // 16)
        ax.set_xticks(range(0, len(keys), step), keys[::step], rotation=45 if len(keys) > 6 else 0, ha="right" if len(keys) > 6 else "center")
        ax.set_ylabel("probability")
    ax.set_title(f"{answer.statement}\n{answer.method}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def html(answer: Answer | NumericAnswer | PopulationAnswer) -> str:
    """A notebook's view: the number with its method, a distribution's table, or a sample answer's images inline."""
    title = f"<code>{escape.escape(answer.statement)}</code>"
    if isinstance(answer, PopulationAnswer):
        rows = [answer.examples[k] for k in ("factual", "counterfactual", "truth") if k in answer.examples]
        picture = f'<br/><img src="data:image/png;base64,{_png64(grid(np.concatenate(rows), columns=len(rows[0])))}" style="image-rendering:pixelated" width="{130 * len(rows[0])}"/>' if rows else ""
        return f"<div>{escape.escape(population_line(answer))}<br/>{escape.escape(str(answer.path))}{picture}</div>"
    if isinstance(answer, Answer):
        tiles = ([("factual", answer.factual)] if answer.factual is not None else []) + [(f"{answer.kind} {j + 1}", s) for j, s in enumerate(answer.samples)]
        cells = "".join(
            f'<figure style="display:inline-block;margin:4px;text-align:center"><img src="data:image/png;base64,{_png64(s.image)}" width="128" '
            f'style="image-rendering:pixelated"/><figcaption style="font-size:80%">{escape.escape(t)}<br/>'
            f'{escape.escape(", ".join(f"{n}={_short(v)}" for n, v in s.labels.items()))}</figcaption></figure>'
            for t, s in tiles if s.image is not None)
        return f"<div>{title}<br/>{cells or escape.escape(repr(answer))}</div>"
    method = f"<i>{escape.escape(answer.method)}</i>"
    if answer.kind != "distribution":
        error = "" if answer.exact else f" ± {_number(answer.stderr)}"
        return f"<div>{title} = <b>{_number(answer.value)}</b>{error} &nbsp; {method}</div>"
    rows = "".join(
        f"<tr><td style='text-align:right'>{escape.escape(_key(k))}</td><td>{_number(v)}</td>"
        f"<td><div style='background:#4c72b0;height:10px;width:{max(0.0, min(1.0, v)) * 200 if 'mean' not in answer.value else 0:.0f}px'></div></td></tr>"
        for k, v in answer.value.items())
    return f"<div>{title} &nbsp; {method}<table>{rows}</table></div>"


def _png64(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image), mode="L").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _number(value: float) -> str:
    return f"{value:.4f}" if abs(value) < 100 else f"{value:.2f}"


def _key(key) -> str:
    return ", ".join(map(str, key)) if isinstance(key, tuple) else str(key)


# ---- population answers --------------------------------------------------------------------


def _write_population(k: int, answer: PopulationAnswer, out: Path, place) -> dict:
    archive = place(out / f"{k:02d}_population.npz")
    shutil.move(answer.path, archive)  # a rename: the runner built it in this folder (cq query's scratch)
    record = population_record(answer) | {"npz": str(archive)}
    if answer.examples:
        rows = [answer.examples[k] for k in ("factual", "counterfactual", "truth") if k in answer.examples]
        record["examples"] = str(save_png(grid(np.concatenate(rows), columns=len(rows[0])), place(out / f"{k:02d}_examples.png"), scale=2))
    summary = place(out / f"{k:02d}_summary.json")
    write_atomic(summary, lambda f: f.write((json.dumps(record, indent=1) + "\n").encode()))
    return record | {"summary": str(summary)}


def population_record(answer: PopulationAnswer) -> dict:
    """The JSON-ready record of a population answer."""
    return {"kind": answer.kind, "statement": answer.statement, "line": answer.line, "selection": answer.selection,
            "intervention": answer.intervention} | answer.summary


def population_line(answer: PopulationAnswer) -> str:
    """``given ..., do(...)  40,960 units; IoU 0.9961 (>0.9: 1.000); 2,310 images/s (2 processes)``."""
    s = answer.summary
    if not s:
        return f"{answer.statement}  (answered on rank 0)"
    fidelity = s.get("fidelity", {})
    score = "".join(f"; {m} {fidelity[m]:.4f}" for m in ("iou", "mae_255") if m in fidelity)
    above = f" (>0.9: {fidelity['above_0.9']:.3f})" if "above_0.9" in fidelity else ""
    processes = s["processes"]
    return (f"{answer.statement}  {s['units']:,} units{score}{above}; {s['images_per_s']:,.0f} images/s "
            f"({processes} process{'es' if processes > 1 else ''})")


# ---- sample answers -------------------------------------------------------------------------


def _write_one(k: int, answer: Answer, out: Path, place) -> dict:
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
        record["factual"] = _files(answer.factual, folder, "factual", place)
    record["samples"] = [_files(s, folder, f"sample_{j:03d}", place) for j, s in enumerate(answer.samples)]
    tiles = ([("factual", answer.factual)] if answer.factual is not None else []) + [
        (f"{answer.kind[:14]} {j + 1}", s) for j, s in enumerate(answer.samples)
    ]
    if any(s.image is not None for _, s in tiles):
        record["panel"] = str(panel(tiles, place(out / f"{k:02d}_{answer.kind}.png")))
    return record


def _files(sample: Sample, folder: Path, stem: str, place) -> dict:
    record = {"labels": sample.labels}
    if sample.image is not None:
        record["image"] = str(save_png(sample.image, place(folder / f"{stem}.png")))
    if sample.mean is not None:
        record["mean"] = str(save_png(sample.mean, place(folder / f"{stem}_mean.png")))
    return record


def panel(tiles: list[tuple[str, Sample]], path: Path, columns: int = 8) -> Path:
    """A row-major grid of enlarged images, each captioned with its title and labels."""
    size = TILE
    width, height = size + 8, size + CAPTION
    rows = -(-len(tiles) // columns)
    canvas = Image.new("L", (min(columns, len(tiles)) * width, rows * height), 255)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for i, (title, sample) in enumerate(tiles):
        r, c = divmod(i, columns)
        x, y = c * width + 4, r * height + 2
        image = sample.image if sample.image is not None else np.zeros((1, 1))
        tile = Image.fromarray(to_uint8(image), mode="L").resize((size, size), Image.NEAREST)
        canvas.paste(tile, (x, y))
        text = [title] + [f"{n}={_short(v)}" for n, v in sample.labels.items()]
        draw.multiline_text((x, y + size + 2), "\n".join(text[:6]), fill=0, font=font, spacing=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


def _short(value) -> str:
    return value if isinstance(value, str) else f"{value:.3g}"
