"""MolmoAct2-Nano: the whole MolmoAct2 architecture in miniature (issue 6).

LeRobot-style layout: `configuration_nano` (config), `modeling_nano` (network), `processing_nano`
(tokenizer + images), `inference` (`predict_action`), `train_step` (losses), `policy` (`NanoPolicy`,
`load_nano`), `factory` (random checkpoints). Importing this package imports torch and transformers
and registers Nano with the Auto classes, so

    import molmoact2.models.nano
    AutoModelForImageTextToText.from_pretrained(DIR)   # offline, no remote code
    AutoProcessor.from_pretrained(DIR)

`molmoact2` itself never imports this package (it stays fast to import).
"""

from __future__ import annotations

from molmoact2.models.nano.configuration_nano import MODEL_TYPE, NanoConfig, register_config
from molmoact2.models.nano.modeling_nano import NanoForConditionalGeneration
from molmoact2.models.nano.processing_nano import NanoProcessor


def _register() -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    register_config()
    for auto, cls in ((AutoModelForImageTextToText, NanoForConditionalGeneration), (AutoProcessor, NanoProcessor)):
        try:
            auto.register(NanoConfig, cls)
        except ValueError:  # already registered
            pass


_register()


def load_nano(path=None, **opts):
    """The registry's entry point (`load_policy("nano", ...)`); see policy.load_nano."""
    from molmoact2.models.nano.policy import load_nano as _load

    return _load(path, **opts)


__all__ = ["MODEL_TYPE", "NanoConfig", "NanoForConditionalGeneration", "NanoProcessor", "load_nano"]
