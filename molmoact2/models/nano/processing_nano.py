"""Nano's processor: its own small byte-level BPE tokenizer + image preprocessing + chat template.

The tokenizer holds the SAME special tokens as the real MolmoAct2 tokenizer, in the order of
`molmoact2.tokens.special_tokens()`: generated tokens (chat, markers, action/state/depth families)
come right after the BPE vocabulary, and the input-only image tokens come last, so the LM head
(`vocab_size` rows) can emit every token it must generate while image tokens live in the extra
embedding rows, as in the real checkpoint.

Images: resize to the ViT input size with PIL bilinear ("crop_mode: resize", the real robot mode),
scale to [-1, 1] (mean = std = 0.5). numpy + PIL only (no torchvision: none for CPU here).

Each `<|image|>` in the text becomes `<im_start>` + rows x (`<im_patch>` x cols + `<im_col>`) + `<im_end>`;
the model adds pooled image features to the `<im_patch>` embeddings in order.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from molmoact2 import tokens as T

PROCESSOR_CONFIG = "processor_config.json"
IMAGE_TOKENS = (T.IMAGE, *T.IMAGE_PATCH_TOKENS)  # input-only, the extra embedding rows


# ---- tokenizer ---------------------------------------------------------------------------------
def _corpus() -> list[str]:
    """Text the BPE merges are learned from: the prompt template, sim tasks and spatial questions.

    Only the merges depend on it; any text still tokenizes (byte-level fallback)."""
    state = T.state_tokens_text(np.arange(6) * 40)
    lines = [
        T.build_robot_prompt("pick up the red cube and place it in the bowl", np.arange(6) * 40,
                             "single so101 robotic arm in molmoact2 sim", "absolute joint pose", 2, style)
        for style in T.OUTPUT_STYLES
    ]
    lines += [
        f"The task is to {t}. The setup is single so101 robotic arm in molmoact2 sim. The current state of the "
        f"robot is {state}. The expected control mode is absolute joint pose."
        for t in ("pick up the red cube", "put the green block in the blue bowl", "push the yellow cube to the left",
                  "stack the red cube on the blue cube", "open the drawer", "move the arm to the target")
    ]
    for label in ("red cube", "blue bowl", "green block", "yellow cube", "gripper", "table", "objects", "cubes"):
        lines += [f"Point to {label}\nPlease say 'There are none.' if it is not in the image.",
                  f'Point to all occurrences of "{label}"', f"How many {label} are there?",
                  f"Count the {label} in the image, then point to them.", f"Which is closer to the camera, the {label}?",
                  f'<points coords="1 1 512 384 2 300 700">{label}</points>',
                  f"Counting the <points coords=\"1 1 100 200\">{label}</points> shows a total of 1.",
                  f'<boxes coords="1 10 20 30 40">{label}</boxes>', "There are none."]
    lines += ["0 1 2 3 4 5 6 7 8 9 10 100 1000 yes no left right front back above below near far closer"]
    return lines


def build_tokenizer(bpe_vocab_size: int = 512):
    """A fresh byte-level BPE `PreTrainedTokenizerFast` with MolmoAct2's special tokens appended."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=bpe_vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  min_frequency=2, show_progress=False)
    tok.train_from_iterator(_corpus(), trainer=trainer)
    generated = T.special_tokens(include_chat=True, include_image=False)
    tok.add_special_tokens(generated)
    tok.add_special_tokens(list(IMAGE_TOKENS))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=T.IM_END, pad_token=T.ENDOFTEXT,
                                   padding_side="left")
    check_vocabulary(fast.get_vocab())
    return fast


def check_vocabulary(vocab: dict[str, int]) -> None:
    """The id layout the model relies on: families contiguous, image tokens last."""
    T.TokenIds.from_vocab(vocab)  # raises if a family is not contiguous
    n = len(vocab)
    ids = [vocab.get(t) for t in IMAGE_TOKENS]
    if None in ids or sorted(ids) != list(range(n - len(IMAGE_TOKENS), n)):
        raise ValueError(f"tokenizer: image tokens {IMAGE_TOKENS} must be the last {len(IMAGE_TOKENS)} ids")


# ---- images ------------------------------------------------------------------------------------
def to_uint8_rgb(image: Any) -> np.ndarray:
    """PIL image or array (HWC uint8, or float in [0, 1]) -> uint8 [H, W, 3]."""
    if hasattr(image, "convert"):  # PIL
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"image: expected [H, W, 3] (RGB) or a PIL image, got shape {list(arr.shape)}")
    if arr.dtype.kind == "f":
        arr = np.clip(arr * 255.0 if arr.size and arr.max() <= 1.0 else arr, 0, 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise ValueError(f"image: expected uint8 or float, got {arr.dtype}")
    return arr[..., :3]


def preprocess_image(image: Any, size_hw: Sequence[int]) -> np.ndarray:
    """-> float32 [3, H, W] in [-1, 1] (PIL bilinear resize, mean = std = 0.5)."""
    from PIL import Image

    rgb = to_uint8_rgb(image)
    h, w = int(size_hw[0]), int(size_hw[1])
    if rgb.shape[:2] != (h, w):
        rgb = np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize((w, h), Image.BILINEAR))
    x = rgb.astype(np.float32) / 255.0
    return ((x - 0.5) / 0.5).transpose(2, 0, 1).copy()


# ---- processor ---------------------------------------------------------------------------------
class NanoProcessor:
    """`processor(text=..., images=...)`, `apply_chat_template`, `decode`, `save_pretrained`/`from_pretrained`."""

    def __init__(self, tokenizer: Any, image_size: Sequence[int] = (64, 64), patch_size: int = 8,
                 pooling_size: Sequence[int] = (2, 2)) -> None:
        self.tokenizer = tokenizer
        self.image_size = [int(s) for s in image_size]
        self.patch_size = int(patch_size)
        self.pooling_size = [int(p) for p in pooling_size]
        check_vocabulary(tokenizer.get_vocab())
        self.token_ids = T.TokenIds.from_vocab(tokenizer.get_vocab())

    # geometry of one image's tokens
    @property
    def image_grid(self) -> tuple[int, int]:
        rows = self.image_size[0] // self.patch_size // self.pooling_size[0]
        cols = self.image_size[1] // self.patch_size // self.pooling_size[1]
        return rows, cols

    def image_token_text(self) -> str:
        rows, cols = self.image_grid
        return "<im_start>" + ("<im_patch>" * cols + "<im_col>") * rows + "<im_end>"

    def expand_images(self, text: str, num_images: int) -> str:
        found = text.count(T.IMAGE)
        if found != num_images:
            raise ValueError(f"processor: the text has {found} {T.IMAGE} placeholder(s) but {num_images} image(s) "
                             f"were given; they must match (use molmoact2.tokens.image_prefix)")
        return text.replace(T.IMAGE, self.image_token_text())

    def __call__(self, text: str | list[str], images: Any = None, return_tensors: str = "pt",
                 padding_side: str = "left", **_: Any) -> dict[str, Any]:
        import torch

        texts = [text] if isinstance(text, str) else list(text)
        if images is None:
            per_text: list[list[Any]] = [[] for _ in texts]
        elif isinstance(text, str):
            per_text = [list(images) if isinstance(images, (list, tuple)) else [images]]
        else:
            per_text = [list(im) for im in images]
        if len(per_text) != len(texts):
            raise ValueError(f"processor: {len(texts)} texts but {len(per_text)} image lists")
        prefix = [self.tokenizer.eos_token_id]  # no BOS in a Qwen vocabulary: the real processor prepends EOS
        rows = [prefix + self.tokenizer.encode(self.expand_images(t, len(ims)), add_special_tokens=False)
                for t, ims in zip(texts, per_text)]
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            sl = slice(width - len(r), width) if padding_side == "left" else slice(0, len(r))
            ids[i, sl] = torch.tensor(r)
            mask[i, sl] = 1
        flat = [im for ims in per_text for im in ims]
        out: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        if flat:
            out["pixel_values"] = torch.from_numpy(np.stack([preprocess_image(im, self.image_size) for im in flat]))
        return out

    def apply_chat_template(self, messages: list[dict[str, Any]], tokenize: bool = False,
                            add_generation_prompt: bool = True, return_dict: bool = False, **kwargs: Any) -> Any:
        """Qwen chat turns; image content items become the image prefix of their turn (Molmo2 style)."""
        text, images = "", []
        for msg in messages:
            content = msg["content"]
            if isinstance(content, str):
                content = [{"type": "text", "text": content}]
            imgs = [c["image"] for c in content if c.get("type") == "image"]
            body = "".join(c["text"] for c in content if c.get("type") == "text")
            start = len(images)
            images += imgs
            prefix = "".join(f"Image {start + i + 1}{T.IMAGE}" for i in range(len(imgs))) if len(imgs) > 1 \
                else T.IMAGE * len(imgs)
            text += f"{T.IM_START}{msg['role']}\n{prefix}{body}{T.IM_END}\n"
        if add_generation_prompt:
            text += f"{T.IM_START}assistant\n"
        if not tokenize:
            return text
        out = self(text=text, images=images or None)
        return out if return_dict else out["input_ids"]

    def decode(self, ids: Any, skip_special_tokens: bool = False) -> str:
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def batch_decode(self, ids: Any, skip_special_tokens: bool = False) -> list[str]:
        return [self.decode(row, skip_special_tokens) for row in ids]

    # ---- files -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "processor_class": type(self).__name__,
            "image_processor": {"image_processor_type": "NanoImageProcessor",
                                "size": {"height": self.image_size[0], "width": self.image_size[1]},
                                "patch_size": self.patch_size, "pooling_size": self.pooling_size,
                                "crop_mode": "resize", "image_mean": [0.5] * 3, "image_std": [0.5] * 3},
        }

    def save_pretrained(self, directory: str | os.PathLike, **_: Any) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(directory)
        (directory / PROCESSOR_CONFIG).write_text(json.dumps(self.to_dict(), indent=2))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **_: Any) -> "NanoProcessor":
        """Offline, from a local directory. Extra keyword arguments of the real loading path
        (`trust_remote_code=`, `extra_special_tokens=`) are accepted and not needed."""
        from transformers import PreTrainedTokenizerFast

        directory = Path(directory)
        path = directory / PROCESSOR_CONFIG
        if not path.is_file():
            raise FileNotFoundError(f"NanoProcessor: expected {path} (written by save_pretrained), not found")
        doc = json.loads(path.read_text())
        ip = doc.get("image_processor")
        if not isinstance(ip, dict):
            raise ValueError(f"{path}: expected a nested 'image_processor' object, got {type(ip).__name__}")
        tok = PreTrainedTokenizerFast.from_pretrained(str(directory))
        tok.padding_side = "left"
        return cls(tok, image_size=(ip["size"]["height"], ip["size"]["width"]), patch_size=ip["patch_size"],
                   pooling_size=ip["pooling_size"])
