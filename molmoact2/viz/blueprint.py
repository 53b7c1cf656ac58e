"""The default Rerun blueprint for a stream of Steps: what a policy engineer sees first.

Left: one 2-D view per camera (frame + spatial answer + planned path + MolmoThink mask on the main
camera). Middle: the depth prefix (code grid, update mask, decoded depth) above the 3-D scene.
Right: actions / chunk / state / latency / MolmoThink counters, and tabs with the text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from molmoact2.viz import layout as L


def default_blueprint(
    cameras: Sequence[str],
    joint_names: Sequence[str] | None = None,
    *,
    collapse_panels: bool = False,
) -> Any:
    """Build an `rrb.Blueprint` for recordings of Steps with these cameras and joint names.

    `joint_names` only shapes the action plot title (the series themselves are named by the logger);
    it may be None when the backend gives unnamed actions (they are logged as `a0`, `a1`, ...).
    """
    import rerun.blueprint as rrb

    if not cameras:
        raise ValueError("default_blueprint: expected at least one camera name, got none")
    camera_views = [rrb.Spatial2DView(origin=L.camera(cam), name=f"camera: {cam}") for cam in cameras]
    depth_row = rrb.Horizontal(
        rrb.Spatial2DView(origin=L.DEPTH_CODES, name="depth codes (10x10)"),
        rrb.Spatial2DView(origin=L.DEPTH_UPDATE_MASK, name="re-predicted cells"),
        rrb.Spatial2DView(origin=L.DEPTH_DECODED, name="decoded depth (fixed range)"),
    )
    scene = rrb.Spatial3DView(origin=L.WORLD, name="3-D scene: cloud, planned path, denoising")
    n_joints = len(joint_names) if joint_names else None
    actions_title = f"actions now ({n_joints} joints)" if n_joints else "actions now"
    plots = rrb.Vertical(
        rrb.TimeSeriesView(
            origin=L.ACTIONS,
            contents=["$origin/**", "- $origin/chunk_plot"],
            name=actions_title,
        ),
        rrb.Spatial2DView(origin=L.ACTION_CHUNK_PLOT, name="action chunk (x: chunk step, up: value)"),
        rrb.TimeSeriesView(origin=L.STATE, name="robot state"),
        rrb.Horizontal(
            rrb.TimeSeriesView(origin=L.LATENCY, name="latency (ms)"),
            rrb.TimeSeriesView(origin=L.THINK, name="MolmoThink"),
        ),
        rrb.Tabs(
            rrb.TextDocumentView(origin=L.TEXT_AVAILABILITY, name="availability"),
            rrb.TextDocumentView(origin=L.TEXT_PROMPT, name="prompt"),
            rrb.TextDocumentView(origin=L.TEXT_ANSWER, name="answer"),
            rrb.TextDocumentView(origin=L.TEXT_GENERATED, name="generated"),
        ),
    )
    return rrb.Blueprint(
        rrb.Horizontal(
            rrb.Vertical(*camera_views, name="cameras"),
            rrb.Vertical(depth_row, scene, row_shares=[2, 3], name="depth and scene"),
            plots,
            column_shares=[2, 2, 2],
        ),
        rrb.TimePanel(timeline=L.STEP_TIMELINE),
        collapse_panels=collapse_panels,
    )
