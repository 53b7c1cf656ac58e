"""Is Nano-ER's pointing limited by how it decodes numbers? Greedy vs whole-number decoding, a few minutes on CPU.

    .venv/bin/python scripts/probe_number_decoding.py --checkpoint assets/nano_er --data /tmp/nano_heldout

`generate` writes a coordinate greedily, one token at a time (" 6", "9", "4"), so a model unsure between 694 and
703 can commit to the wrong first digit and never recover. This re-decodes the first point of each held-out
"Point to the <movable object>" answer two other ways, scoring every whole 3-digit value within --window of the
greedy one as a token sequence (the tokenizer's own split of " 694", so the model is scored on what it was
trained to write): x first, then y given that x.

  * joint: the most probable value (what beam search over the number would find);
  * mean: the probability-weighted mean of the values (a regression readout; not something `generate` can do).

Each variant's point is graded like `eval qa` (inside the named object's segmentation mask), paired with greedy
on the same questions. The bin is left out: pointing at it is already right 97% of the time.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def score_values(model, prompt_ids: list[int], pixel_values, values: list[int], encode) -> "torch.Tensor":
    """Log-probability of writing each value (as ' NNN') right after `prompt_ids`: one batched forward, the
    shorter token sequences padded on the right (causal attention: padding after a value cannot change it)."""
    import torch

    toks = [encode(f" {v}") for v in values]
    width = max(map(len, toks))
    seqs = torch.tensor([prompt_ids + t + [0] * (width - len(t)) for t in toks])
    logits = model.forward(seqs, torch.ones_like(seqs), pixel_values.expand(len(seqs), *pixel_values.shape[1:]),
                           logits_to_keep=width + 1)["logits"]
    logp = logits.log_softmax(-1)
    return torch.stack([sum(logp[i, j, t] for j, t in enumerate(tt)) for i, tt in enumerate(toks)])


def redecode(model, prompt_ids, pixel_values, center: int, window: int, encode) -> tuple[int, float]:
    """(most probable value, probability-weighted mean) among the 3-digit values within `window` of `center`."""
    import torch

    values = list(range(max(100, center - window), min(999, center + window) + 1))
    scores = score_values(model, prompt_ids, pixel_values, values, encode)
    probs = scores.softmax(0)
    return values[int(scores.argmax())], float((probs * torch.tensor(values, dtype=torch.float)).sum())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="assets/nano_er")
    ap.add_argument("--data", default="/tmp/nano_heldout", help="a data cache from `molmoact2 train data`")
    ap.add_argument("--max-questions", type=int, default=150)
    ap.add_argument("--window", type=int, default=40, help="values within this many thousandths of greedy's")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)

    import torch
    from tqdm.auto import tqdm

    from molmoact2 import spatial
    from molmoact2.evaluation.offline import lands_on
    from molmoact2.evaluation.qa_check import sample_questions
    from molmoact2.models.registry import load_policy
    from molmoact2.models.nano.processing_nano import to_uint8_rgb
    from molmoact2.training.nano_examples import NanoTrainData

    torch.set_num_threads(a.threads)
    policy = load_policy(f"nano:{a.checkpoint}", seed=0)
    model, processor = policy.model, policy.processor
    tokenizer = processor.tokenizer

    def encode(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    data = NanoTrainData.load(a.data, progress=False)
    indices = [i for i in sample_questions(data.qa, 100000, 0, ("point",))
               if not data.qa[i]["question"].startswith("Point to the bin")][: a.max_questions]
    right = {"greedy": [], "joint": [], "mean": []}
    for i in tqdm(indices, desc="questions", unit="q"):
        item = data.qa[i]
        content = [{"type": "image", "image": to_uint8_rgb(data.qa_image(item))},
                   {"type": "text", "text": item["question"]}]
        inputs = processor.apply_chat_template([{"role": "user", "content": content}], tokenize=True,
                                               add_generation_prompt=True, return_dict=True)
        prompt = inputs["input_ids"][0].tolist()
        with torch.no_grad():
            new = model.generate(**inputs, max_new_tokens=40)[0, len(prompt):].tolist()
            answer = processor.decode(new, skip_special_tokens=True).strip()
            m = re.search(r'<points coords="1 1 (\d{3}) (\d{3})">(.*?)</points>', answer)
            if m is None:
                continue  # no 3-digit first point: nothing to re-decode (greedy's miss stays out of all three)
            x_greedy, y_greedy, name = int(m.group(1)), int(m.group(2)), m.group(3)
            head = encode(answer[: m.start(1) - 1])  # '<points coords="1 1'
            if new[: len(head)] != head:
                raise RuntimeError(f"the answer's prefix does not re-tokenize as generated: {answer!r}")
            pixels = inputs["pixel_values"]
            pixels = pixels[None] if pixels.dim() == 3 else pixels
            x_joint, x_mean = redecode(model, prompt + head, pixels, x_greedy, a.window, encode)
            y_joint, _ = redecode(model, prompt + head + encode(f" {x_joint}"), pixels, y_greedy, a.window, encode)
            _, y_mean = redecode(model, prompt + head + encode(f" {round(x_mean)}"), pixels, y_greedy, a.window,
                                 encode)
        seg = data.qa_segmentation(item)
        h, w = seg.shape

        def lands(x: float, y: float) -> bool:
            pts = spatial.parse_answer(f'<points coords="1 1 {round(x)} {round(y)}">{name}</points>').points_px(
                width=w, height=h, image=1)
            return bool(lands_on(seg, item["labels"], *pts[0]))

        right["greedy"].append(lands(x_greedy, y_greedy))
        right["joint"].append(lands(x_joint, y_joint))
        right["mean"].append(lands(x_mean, y_mean))

    n = len(right["greedy"])
    if n == 0:
        raise SystemExit("no answer with a 3-digit first point to re-decode")
    print(f"\n{n} questions at movable objects ({a.checkpoint}, {a.data}; window ±{a.window}/1000)")
    print("| decoding | inside the mask | paired with greedy: only it right / only greedy right |")
    print("|---|---|---|")
    for k, hits in right.items():
        pair = ("–" if k == "greedy" else
                f"{sum(h and not g for h, g in zip(hits, right['greedy']))} / "
                f"{sum(g and not h for h, g in zip(hits, right['greedy']))}")
        print(f"| {k} | {100 * sum(hits) / n:.0f}% ({sum(hits)}/{n}) | {pair} |")


if __name__ == "__main__":
    main()
