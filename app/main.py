"""Assemble the workbench: one tab per module listed in TABS.

A tab module defines `TITLE: str` and `build(ctx: AppContext) -> None`, which creates its
components inside the `gr.Tab` opened for it. Keep tab modules thin: call the library.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import molmoact2  # noqa: F401  (applies the offline settings before gradio is imported)

# Order = order of the tabs in the page.
TABS = [
    "app.tabs.inspector",
    "app.tabs.spatial",
    "app.tabs.think",
    "app.tabs.openfast",
    "app.tabs.simulator",
    "app.tabs.control",
]


@dataclass(frozen=True)
class AppContext:
    """What every tab may need: the model spec the app was started with."""

    policy_spec: str = "nano"


def model_status(spec: str) -> str:
    """One honest line about the model the app was started with (the tabs below need none)."""
    from molmoact2.models.registry import nano_default_dir, spec_kind

    if spec == "nano" and not (nano_default_dir() / "config.json").is_file():
        return ("Model: `nano` — not shipped yet. The Spatial reasoning and Control tabs take a model spec of their "
                "own (a checkpoint directory, an /act server, or the simulator's scripted `expert`); the other tabs "
                "parse outputs, tokenize actions, encode depth and drive the scripted experts.")
    if spec == "nano":
        return (f"Model: `nano` — MolmoAct2-Nano from `{nano_default_dir()}`, the whole architecture in miniature, "
                "trained only on our simulator (its measured success and accuracy are in the README). The Spatial "
                "reasoning, Think debugger and Control tabs run it; the others need no model.")
    try:
        return f"Model: `{spec}` ({spec_kind(spec)})."
    except ValueError as err:
        return f"Model: `{spec}` — {err}"


def build_app(policy: str = "nano"):
    import gradio as gr

    ctx = AppContext(policy_spec=policy)
    with gr.Blocks(title="MolmoAct2 Workbench") as demo:
        gr.Markdown(
            "# MolmoAct2 Workbench\n"
            "Understand, teach and debug MolmoAct2-style action reasoning models — offline, on a CPU. "
            + model_status(policy)
        )
        with gr.Tabs():
            for name in TABS:
                module = importlib.import_module(name)
                with gr.Tab(module.TITLE, elem_id=f"tab-{name.rsplit('.', 1)[-1]}"):
                    module.build(ctx)
    return demo


def launch(host: str = "127.0.0.1", port: int = 7860, policy: str = "nano") -> None:
    demo = build_app(policy)
    print(f"MolmoAct2 Workbench on http://{host}:{port}", flush=True)
    # Never share=True: nothing leaves this machine.
    demo.queue(default_concurrency_limit=1).launch(server_name=host, server_port=port, share=False, show_error=True)
