#!/usr/bin/env python3
"""Checks a run's TensorBoard event files (RUN/tensorboard/<stage>/) with TensorBoard's own reader.

Per stage: the scalar tags (loss/total, loss/diffusion, lr, grad_norm, images_per_second, and
loss/leffa when present) exist with strictly increasing, unique steps that are the steps of
stages/<stage>/logs/metrics.jsonl, with its loss values; metrics.jsonl holds each step once; every
image (validation/<pair>-<person>, flow/<layer>/<sample>) decodes as a PNG of the size its event
says and the stage's resolution gives, at unique increasing steps, with the bytes of the PNG file
the trainer wrote beside it. Prints a summary; exits 1 on any problem.

    python3 -m venv /tmp/tb && /tmp/tb/bin/pip install tensorboard pillow
    /tmp/tb/bin/python Scripts/check_tensorboard.py runs/tiny-synthetic
"""
import io
import json
import os
import re
import sys

from PIL import Image
from tensorboard.backend.event_processing import event_accumulator as ea

SCALARS = ["loss/total", "loss/diffusion", "lr", "grad_norm", "images_per_second"]
GAP = 2  # pixels between the panels of a row (Image.hstack)

problems = []


def problem(msg):
    problems.append(msg)
    print("  PROBLEM: " + msg)


def stage_sizes(run):
    """{stage: (height, width)} from the run's config.yaml (resolution: HxW), without a YAML parser."""
    text = open(os.path.join(run, "config.yaml")).read()
    body = text[text.index("\nstages:"):]
    names = [(m.start(), m.group(1)) for m in re.finditer(r"\bname:\s*([\w.-]+)", body)]
    sizes = {}
    for k, (start, name) in enumerate(names):
        end = names[k + 1][0] if k + 1 < len(names) else len(body)
        m = re.search(r"\bresolution:\s*(\d+)x(\d+)", body[start:end])
        if m:
            sizes[name] = (int(m.group(1)), int(m.group(2)))
    return sizes


def increasing(steps):
    return all(a < b for a, b in zip(steps, steps[1:]))


def check_stage(run, stage, size):
    print(f"stage {stage} ({size[0]}x{size[1]}):")
    acc = ea.EventAccumulator(
        os.path.join(run, "tensorboard", stage), size_guidance={ea.SCALARS: 0, ea.IMAGES: 0}
    ).Reload()
    tags = acc.Tags()
    metrics_path = os.path.join(run, "stages", stage, "logs", "metrics.jsonl")
    rows = [json.loads(line) for line in open(metrics_path)] if os.path.exists(metrics_path) else []
    row_steps = [r["step"] for r in rows]
    if len(set(row_steps)) != len(row_steps) or not increasing(row_steps):
        problem(f"{stage}: metrics.jsonl steps are not unique and increasing: {row_steps}")

    scalar_tags = list(SCALARS)
    if "loss/leffa" in tags["scalars"] or any(r.get("leffa") is not None for r in rows):
        scalar_tags.append("loss/leffa")
    for tag in scalar_tags:
        if tag not in tags["scalars"]:
            problem(f"{stage}: scalar {tag} is missing")
            continue
        events = acc.Scalars(tag)
        steps = [e.step for e in events]
        if not increasing(steps):
            problem(f"{stage}: {tag} steps are not strictly increasing: {steps}")
        want = [r["step"] for r in rows if tag != "loss/leffa" or r.get("leffa") is not None]
        if steps != want:
            problem(f"{stage}: {tag} steps {steps} are not metrics.jsonl's {want}")
        print(f"  {tag:18s} {len(steps):4d} steps {steps[0] if steps else '-'}..{steps[-1] if steps else '-'}")
    by_step = {r["step"]: r for r in rows}
    for e in acc.Scalars("loss/total") if "loss/total" in tags["scalars"] else []:
        r = by_step.get(e.step)
        if r and abs(e.value - r["loss"]) > 1e-6 * max(1.0, abs(r["loss"])):
            problem(f"{stage}: loss/total at step {e.step} is {e.value}, metrics.jsonl says {r['loss']}")

    h, w = size
    groups = {}
    for tag in tags["images"]:
        events = acc.Images(tag)
        steps = [e.step for e in events]
        if not increasing(steps):
            problem(f"{stage}: image {tag} steps are not unique and increasing: {steps}")
        kind = tag.split("/")[0]
        for e in events:
            img = Image.open(io.BytesIO(e.encoded_image_string))
            if img.format != "PNG":
                problem(f"{stage}: {tag} at step {e.step} is {img.format}, not PNG")
            img.load()
            panels = 4 if kind == "validation" else (5 if img.size[0] == 5 * w + 4 * GAP else 4)
            want = (panels * w + (panels - 1) * GAP, h)
            if img.size != (e.width, e.height) or img.size != want:
                problem(f"{stage}: {tag} at step {e.step} is {img.size}, event says {(e.width, e.height)}, "
                        f"expected {want}")
            if kind == "validation":
                name = tag[len("validation/"):] + ".png"
                path = os.path.join(run, "stages", stage, "samples", f"step-{e.step:08d}", name)
            else:
                _, layer, sample = tag.split("/", 2)
                path = os.path.join(run, "stages", stage, "snapshots", f"step-{e.step:08d}", f"{sample}-{layer}.png")
            if not os.path.exists(path):
                problem(f"{stage}: {tag} at step {e.step}: no PNG file {path}")
            elif open(path, "rb").read() != e.encoded_image_string:
                problem(f"{stage}: {tag} at step {e.step} differs from {path}")
        g = groups.setdefault(kind, {"tags": 0, "images": 0, "steps": set(), "sizes": set()})
        g["tags"] += 1
        g["images"] += len(events)
        g["steps"].update(steps)
        g["sizes"].update((e.width, e.height) for e in events)
    for kind, g in sorted(groups.items()):
        sizes = ", ".join(f"{a}x{b}" for a, b in sorted(g["sizes"]))
        print(f"  {kind + '/*':18s} {g['tags']} tags, {g['images']} images (w×h {sizes}) "
              f"at steps {sorted(g['steps'])}")
    if not tags["images"]:
        print("  no images")


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    run = sys.argv[1]
    root = os.path.join(run, "tensorboard")
    if not os.path.isdir(root):
        print(f"{root}: no TensorBoard folder (trained with a build that writes none?)")
        return 1
    sizes = stage_sizes(run)
    for stage in sorted(os.listdir(root)):
        if stage not in sizes:
            problem(f"{os.path.join(root, stage)}: not a stage of {run}/config.yaml")
            continue
        check_stage(run, stage, sizes[stage])
    print(f"{len(problems)} problem(s)" if problems else "OK")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
