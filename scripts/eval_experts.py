"""Measure the scripted experts' success rate: `python scripts/eval_experts.py --seeds 100`.

Same as `molmoact2 sim eval-experts`. Rendering is switched off (the experts are privileged and do
not look at images), so 100 seeds x 4 tasks takes minutes, not hours.
"""

from __future__ import annotations

import sys

from molmoact2.commands.sim import main_eval_experts

if __name__ == "__main__":
    sys.exit(main_eval_experts())
