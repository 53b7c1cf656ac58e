"""MuJoCo worlds for the workbench: SO-101 tabletop scenes with cameras and depth, language tasks,
scripted experts, planned-path geometry, and a bimanual variant.

`make_env(task, seed)` is the entry point. MuJoCo is imported lazily (inside functions), so
`import molmoact2.sim` stays cheap.
"""

from __future__ import annotations

__all__ = ["make_env", "task_names", "SimEnv"]


def __getattr__(name: str):
    if name in __all__:
        from molmoact2.sim import env

        return getattr(env, name)
    raise AttributeError(f"module 'molmoact2.sim' has no attribute {name!r}")
