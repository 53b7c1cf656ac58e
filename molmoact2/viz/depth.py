"""Pictures and Plotly figures of depth tokens and MolmoThink masks (the Think debugger, notebooks).

Images are returned as uint8 RGB arrays (cheap to show anywhere); figures are Plotly. No math
beyond drawing: masks, codes and clouds come from `molmoact2.depth` / `molmoact2.geometry`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

GRID = 10
CHANGED_RGB = np.array([255, 40, 40], np.float32)


def _viridis(u: np.ndarray) -> np.ndarray:
    """[0, 1] -> uint8 RGB with a 5-stop viridis approximation (no matplotlib dependency)."""
    stops = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], np.float32)
    x = np.clip(np.nan_to_num(u, nan=0.0), 0, 1) * (len(stops) - 1)
    i = np.minimum(x.astype(int), len(stops) - 2)
    f = (x - i)[..., None]
    return (stops[i] * (1 - f) + stops[i + 1] * f).astype(np.uint8)


def cell_heat_overlay(image: np.ndarray, values: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """`image` (uint8 [H, W, 3]) under a viridis heatmap of `values` [rows, cols], one per grid cell over the full
    image (e.g. an attention head's weight on each image token), scaled to the largest value."""
    img = np.asarray(image)
    v = np.asarray(values, np.float32)
    if img.ndim != 3 or img.shape[2] < 3 or v.ndim != 2:
        raise ValueError(f"cell_heat_overlay: expected an RGB image [H, W, 3] and values [rows, cols], got "
                         f"{list(img.shape)} and {list(v.shape)}")
    h, w = img.shape[:2]
    rows = (np.arange(h) * v.shape[0] // h)[:, None]
    cols = (np.arange(w) * v.shape[1] // w)[None, :]
    level = v / max(float(v.max()), 1e-12)
    heat = _viridis(level[rows, cols]).astype(np.float32)
    return np.clip(img[..., :3].astype(np.float32) * (1 - alpha) + heat * alpha, 0, 255).astype(np.uint8)


def mask_overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.45, grid: int = GRID) -> np.ndarray:
    """The main image with re-predicted cells tinted red and the 10x10 grid drawn (cells over the full image)."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] < 3:
        raise ValueError(f"mask_overlay: expected an RGB image [H, W, 3], got {list(img.shape)}")
    m = np.asarray(mask, bool).reshape(grid, grid)
    h, w = img.shape[:2]
    rows = (np.arange(h) * grid // h)[:, None]
    cols = (np.arange(w) * grid // w)[None, :]
    cell = m[rows, cols]
    out = img[..., :3].astype(np.float32)
    out[cell] = out[cell] * (1 - alpha) + CHANGED_RGB * alpha
    for k in range(1, grid):
        out[min(h - 1, k * h // grid), :] = 255
        out[:, min(w - 1, k * w // grid)] = 255
    return out.astype(np.uint8)


def depth_image(decoded: np.ndarray, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """Decoded depth (relative disparity) -> viridis RGB with a FIXED range (colours comparable across steps)."""
    lo, hi = value_range
    if not hi > lo:
        raise ValueError(f"depth_image: expected value_range lo < hi, got {value_range}")
    return _viridis((np.asarray(decoded, np.float32) - lo) / (hi - lo))


def metric_depth_image(depth_m: np.ndarray, near_m: float, far_m: float) -> np.ndarray:
    """Metric depth -> viridis RGB, near = bright (same orientation as disparity)."""
    d = np.asarray(depth_m, np.float32)
    return _viridis((far_m - d) / max(far_m - near_m, 1e-6))


def code_grid_figure(codes: np.ndarray | None, mask: np.ndarray | None = None, title: str = "depth codes") -> Any:
    """10x10 heatmap; each cell labelled with its code; re-predicted cells outlined in red.

    Colours are categorical (code ids are not ordinal in depth), so neighbours with close ids
    need not look alike.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    if codes is None:
        fig.add_annotation(text="no depth codes in this source", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    else:
        c = np.asarray(codes).reshape(GRID, GRID)
        hue = (c * 37) % 128  # spread neighbouring ids apart in colour
        fig.add_trace(go.Heatmap(z=hue, text=c.astype(str), texttemplate="%{text}", colorscale="Turbo", showscale=False,
                                 hovertemplate="row %{y} col %{x}<br>code %{text}<extra></extra>", zmin=0, zmax=127))
        if mask is not None:
            for k in np.flatnonzero(np.asarray(mask, bool)):
                r, col = divmod(int(k), GRID)
                fig.add_shape(type="rect", x0=col - 0.5, x1=col + 0.5, y0=r - 0.5, y1=r + 0.5, line=dict(color="red", width=3))
    fig.update_yaxes(autorange="reversed", scaleanchor="x", showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    fig.update_layout(title=title, margin=dict(l=10, r=10, t=40, b=10), height=360)
    return fig


def repredicted_figure(steps: np.ndarray, series: dict[str, np.ndarray], title: str) -> Any:
    """Line chart of per-step counts (cells re-predicted, stale cells, ...) against the step index."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, ys in series.items():
        fig.add_trace(go.Scatter(x=steps, y=ys, mode="lines+markers", name=name))
    fig.update_layout(title=title, xaxis_title="step", yaxis_title="cells (of 100)", yaxis_range=[0, 101],
                      margin=dict(l=40, r=10, t=40, b=40), height=320, legend=dict(orientation="h", y=-0.25))
    return fig


def point_cloud_figure(points: np.ndarray | None, colors: np.ndarray | None = None, max_points: int = 15000,
                       title: str = "point cloud (world frame, metres)") -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    if points is None or len(points) == 0:
        fig.add_annotation(text="no metric depth / intrinsics in this source: no point cloud", showarrow=False,
                           x=0.5, y=0.5, xref="paper", yref="paper")
    else:
        pts = np.asarray(points)
        keep = np.linspace(0, len(pts) - 1, min(max_points, len(pts))).astype(int)
        marker: dict = {"size": 1.5}
        if colors is not None:
            marker["color"] = [f"rgb({r},{g},{b})" for r, g, b in np.asarray(colors)[keep]]
        fig.add_trace(go.Scatter3d(x=pts[keep, 0], y=pts[keep, 1], z=pts[keep, 2], mode="markers", marker=marker))
        fig.update_scenes(aspectmode="data")
    fig.update_layout(title=title, margin=dict(l=0, r=0, t=40, b=0), height=420)
    return fig
