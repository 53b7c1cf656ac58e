"""Do Nano's pooled image tokens carry an object's colour and shape? A linear probe, a few seconds on CPU.

    .venv/bin/python scripts/probe_image_tokens.py --checkpoint assets/nano --data /tmp/nano_scenes

`eval words` showed the language model cannot tell the objects apart by name. This asks whether the
information it would need reaches it: for each "Point to the <colour> <shape>" question of a question-scene
cache (`molmoact2 train scenes`; the bin excluded), take the pooled image token (the grid the LM sees: 6x6 at the shipped 2x2 pool) of
the cell holding the object's central pixel, and fit a linear classifier (70% of the questions; reported on
the other 30%) for the name's colour word and its shape word. Controls: the same from another cell of the
same image (17 cells further on: nothing of the object on the 6x6 grid), and from the cell's raw 16x16 pixels.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def linear_probe(features: np.ndarray, labels: list[str], steps: int = 300) -> tuple[float, float, int]:
    """(held-out accuracy, majority-class accuracy, classes) of a multinomial logistic regression."""
    import torch
    import torch.nn.functional as F

    classes = sorted(set(labels))
    y = np.array([classes.index(label) for label in labels])
    split = int(0.7 * len(y))
    mu, sd = features[:split].mean(0), features[:split].std(0) + 1e-6
    x = torch.tensor((features - mu) / sd, dtype=torch.float32)
    yt = torch.tensor(y)
    w = torch.zeros(x.shape[1], len(classes), requires_grad=True)
    b = torch.zeros(len(classes), requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(x[:split] @ w + b, yt[:split]) + 1e-3 * (w ** 2).sum()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = float(((x[split:] @ w + b).argmax(1) == yt[split:]).float().mean())
    majority = float((y[split:] == np.bincount(y[:split]).argmax()).mean())
    return acc, majority, len(classes)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="assets/nano")
    p.add_argument("--data", required=True, help="a question-scene cache (molmoact2 train scenes --out DIR)")
    p.add_argument("--questions", type=int, default=2400, help="random sample of pointing questions (seed 0)")
    a = p.parse_args(argv)

    import torch

    from molmoact2.models.nano.policy import load_nano
    from molmoact2.models.nano.processing_nano import preprocess_image
    from molmoact2.training.nano_examples import NanoTrainData

    model = load_nano(a.checkpoint).model
    data = NanoTrainData.load(a.data, progress=False)
    items = [q for q in data.qa if q["kind"] == "point" and not q["question"].startswith("Point to the bin")]
    if not items:
        raise SystemExit(f"{a.data}: no pointing questions about movable objects in qa.json")
    items = [items[i] for i in np.random.default_rng(0).permutation(len(items))[:a.questions]]
    size = model.config.vit_config.image_default_input_size  # what the processor resizes every image to
    own, other, pixels, colours, shapes = [], [], [], [], []
    with torch.inference_mode():
        for k in range(0, len(items), 100):
            batch = items[k:k + 100]
            images = [data.qa_image(q) for q in batch]
            pv = torch.from_numpy(np.stack([preprocess_image(im, tuple(size)) for im in images]))
            feats = model.encode_images(pv.to(model.dtype)).float().numpy()  # [n, cells, width]
            grid = int(round(np.sqrt(feats.shape[1])))
            for q, im, f in zip(batch, images, feats):
                x, y = (int(v) for v in re.search(r'coords="1 1 (\d+) (\d+)"', q["answer"]).groups())  # 0..1000
                row, col = min(grid - 1, y * grid // 1000), min(grid - 1, x * grid // 1000)
                cell = row * grid + col
                own.append(f[cell])
                other.append(f[(cell + 17) % (grid * grid)])
                ch, cw = im.shape[0] // grid, im.shape[1] // grid
                pixels.append(im[row * ch:(row + 1) * ch, col * cw:(col + 1) * cw].reshape(-1).astype(np.float32))
                words = re.match(r"Point to the (.+?)\n", q["question"]).group(1).split()
                colours.append(words[0])
                shapes.append(words[-1])
    print(f"{a.checkpoint}: {len(items)} questions from {a.data}; linear probe, held-out 30%")
    print("| name word | from the object's image token | from another cell | from the cell's raw pixels | majority class |")
    print("|---|---|---|---|---|")
    for what, labels in (("colour", colours), ("shape", shapes)):
        acc, major, k = linear_probe(np.array(own), labels)
        print(f"| {what} ({k} classes) | {acc:.0%} | {linear_probe(np.array(other), labels)[0]:.0%} | "
              f"{linear_probe(np.array(pixels), labels)[0]:.0%} | {major:.0%} |")


if __name__ == "__main__":
    main()
