"""OpenFAST: the FAST action tokenizer (DCT over time -> scale and round -> byte-level BPE).

Formats layer: depends on numpy, scipy and `tokenizers` only (imported lazily where heavy).
    from molmoact2.openfast import OpenFastProcessor
    proc = OpenFastProcessor.load("assets/openfast_so101_sim")
    ids = proc.encode(actions_BTD)                  # list of id lists
    back = proc.decode(ids)                         # [B, T, D]; raises DecodeError, never zeros
"""

from molmoact2.openfast.errors import DecodeDiagnostics, DecodeError, EncodeRangeError
from molmoact2.openfast.processor import DecodeResult, EncodeResult, OpenFastConfig, OpenFastProcessor

__all__ = [
    "DecodeDiagnostics",
    "DecodeError",
    "DecodeResult",
    "EncodeRangeError",
    "EncodeResult",
    "OpenFastConfig",
    "OpenFastProcessor",
]
