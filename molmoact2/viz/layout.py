"""The ONE entity layout of a Workbench recording: every path the logger writes and the blueprint shows.

No rerun import here: tests, the app and the blueprint all read the same names from this module.

Tree (``{cam}`` and ``{name}`` are escaped entity-path parts, see `part`)::

    cameras/{cam}/rgb                        Image            the camera frame
    cameras/{cam}/overlays/points            Points2D         spatial answer (points_px), pixels
    cameras/{cam}/overlays/planned_path      LineStrips2D     planned EE path projected into the camera
    cameras/{cam}/depth_update_mask          Boxes2D          MolmoThink cells re-predicted this step
                                                              (main camera only: the grid is its image)
    depth/codes                              SegmentationImage 10x10 depth codes; AnnotationContext labels
                                                              each class with its code number
    depth/codes/values                       Boxes2D          the code number written in each cell
    depth/update_mask                        SegmentationImage 10x10: 0 replayed from cache, 1 re-predicted
    depth/decoded                            DepthImage       VQ-VAE decoded depth, FIXED range per recording
    world/point_cloud/{cam}                  Points3D         back-projected camera depth (needs K, T)
    world/planned_path                       LineStrips3D     planned EE path, metres, world frame
    world/denoising/{i}                      LineStrips3D     EE path of flow state i (info["denoising_paths_world"])
    world/cameras/{cam}                      Transform3D + Pinhole (when K / T_world_cam are known)
    actions/{name}                           Scalars          first row of the chunk: the command sent now
    actions/chunk_plot                       LineStrips2D     the whole chunk, one strip per joint (see below)
    state/{name}                             Scalars          observed robot state
    latency/{stage}                          Scalars          milliseconds per stage
    think/cells_repredicted                  Scalars          depth cells re-predicted this step
    think/tokens_saved                       Scalars          depth tokens replayed from the cache
    text/prompt, text/answer, text/generated TextDocument
    text/availability                        TextDocument     which views have data from this backend

Timelines: ``step`` (sequence, Step.index) and ``time`` (duration seconds, Step.timestamp_s).

Why the chunk is a 2-D plot and not a time series: a chunk is a forecast of H future actions made at
one step, and the next step's chunk overlaps it. Drawn on the `time` timeline the overlapping forecasts
interleave into a zig-zag; drawn on a separate `chunk_step` timeline they only show when the viewer
switches away from `step`. A LineStrips2D "plot" (x = chunk index * CHUNK_PLOT_DX, y = -value so up is
positive) is a latest-at value: scrubbing `step` shows exactly that step's chunk, with the executed
prefix drawn thicker. The per-step command (row 0) is a regular time series at `actions/{name}`.
"""

from __future__ import annotations

import re

STEP_TIMELINE = "step"
TIME_TIMELINE = "time"

CAMERAS = "cameras"
DEPTH = "depth"
DEPTH_CODES = "depth/codes"
DEPTH_CODE_VALUES = "depth/codes/values"
DEPTH_UPDATE_MASK = "depth/update_mask"
DEPTH_DECODED = "depth/decoded"
WORLD = "world"
WORLD_POINT_CLOUD = "world/point_cloud"
WORLD_PLANNED_PATH = "world/planned_path"
WORLD_DENOISING = "world/denoising"
WORLD_CAMERAS = "world/cameras"
ACTIONS = "actions"
ACTION_CHUNK_PLOT = "actions/chunk_plot"
STATE = "state"
LATENCY = "latency"
THINK = "think"
THINK_CELLS_REPREDICTED = "think/cells_repredicted"
THINK_TOKENS_SAVED = "think/tokens_saved"
TEXT = "text"
TEXT_PROMPT = "text/prompt"
TEXT_ANSWER = "text/answer"
TEXT_GENERATED = "text/generated"
TEXT_AVAILABILITY = "text/availability"

DEPTH_GRID = 10  # MolmoAct2 depth prefix: 100 codes on a 10x10 grid, row-major.
CHUNK_PLOT_DX = 10.0  # x units per chunk step in the chunk plot, so a 30-step chunk is ~300 wide.

_PLAIN = re.compile(r"[A-Za-z0-9_.\-]")


def part(name: str) -> str:
    """Escape one entity-path part the way Rerun does (backslash before anything but [A-Za-z0-9_.-]).

    Camera and joint names come from datasets ("observation.images.front", "shoulder_pan.pos", "left arm")
    and must never split into extra path levels or collide.
    """
    if not name:
        raise ValueError("entity path part: expected a non-empty name, got ''")
    return "".join(c if _PLAIN.fullmatch(c) else "\\" + c for c in name)


def camera(cam: str) -> str:
    return f"{CAMERAS}/{part(cam)}"


def camera_rgb(cam: str) -> str:
    return f"{camera(cam)}/rgb"


def camera_points(cam: str) -> str:
    return f"{camera(cam)}/overlays/points"


def camera_planned_path(cam: str) -> str:
    return f"{camera(cam)}/overlays/planned_path"


def camera_depth_update_mask(cam: str) -> str:
    return f"{camera(cam)}/depth_update_mask"


def world_camera(cam: str) -> str:
    return f"{WORLD_CAMERAS}/{part(cam)}"


def world_point_cloud(cam: str) -> str:
    return f"{WORLD_POINT_CLOUD}/{part(cam)}"


def world_denoising(i: int) -> str:
    return f"{WORLD_DENOISING}/{int(i)}"


def action(name: str) -> str:
    return f"{ACTIONS}/{part(name)}"


def state(name: str) -> str:
    return f"{STATE}/{part(name)}"


def latency(stage: str) -> str:
    return f"{LATENCY}/{part(stage)}"
