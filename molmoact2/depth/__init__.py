"""Depth tokens: the MolmoAct depth VQ-VAE (`vqvae`), its input pipeline (`preprocess`), a codec
(`codec`: depth map <-> 100 codes), MolmoThink change masks (`think`) and training (`train`, `data`).

Nothing heavy is imported here: `vqvae` / `train` pull in torch when you import them.
"""

from molmoact2.depth.think import THINK_THRESHOLD, update_mask, update_spans

__all__ = ["THINK_THRESHOLD", "update_mask", "update_spans"]
