"""MolmoAct2 Workbench: understand, teach and debug MolmoAct2-style action reasoning models.

Importing the package is cheap (no torch, gradio, rerun or mujoco at import time) and applies
the offline settings, so a notebook kernel behaves like the CLI.
"""

from molmoact2._env import apply_offline_env

apply_offline_env()

__version__ = "0.1.0"
__all__ = ["__version__", "apply_offline_env"]
