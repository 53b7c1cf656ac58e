"""Depth -> 3-D: back-projection to a coloured point cloud (Open3D) and lifting 2-D points.

Camera convention (models/base.py `CameraFrame`): `K` pixel intrinsics, `T_world_cam` camera-to-world
in the OpenCV camera frame (x right, y down, z forward); `depth_m` is metric z-depth, NaN = no return.
Pixel (u, v) refers to the pixel CENTRE at integer coordinates, as in OpenCV.

The numpy functions have no heavy imports; Open3D is imported inside the functions that need it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from molmoact2.models.base import CameraFrame


def _check_K(K: np.ndarray) -> np.ndarray:
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"expected intrinsics K [3, 3], got {list(K.shape)}")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"expected positive focal lengths in K, got fx={K[0, 0]}, fy={K[1, 1]}")
    return K


def _check_T(T: np.ndarray | None) -> np.ndarray:
    if T is None:
        return np.eye(4)
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"expected T_world_cam [4, 4], got {list(T.shape)}")
    return T


def pixels_to_camera(u: np.ndarray, v: np.ndarray, z_m: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pixel coordinates + z-depth -> float64 [N, 3] points in the OpenCV camera frame."""
    K = _check_K(K)
    x = (np.asarray(u, np.float64) - K[0, 2]) * z_m / K[0, 0]
    y = (np.asarray(v, np.float64) - K[1, 2]) * z_m / K[1, 1]
    return np.stack([x, y, np.asarray(z_m, np.float64)], axis=-1)


def camera_to_world(points_cam: np.ndarray, T_world_cam: np.ndarray | None) -> np.ndarray:
    T = _check_T(T_world_cam)
    return points_cam @ T[:3, :3].T + T[:3, 3]


def backproject_depth(
    depth_m: np.ndarray,
    K: np.ndarray,
    T_world_cam: np.ndarray | None = None,
    rgb: np.ndarray | None = None,
    stride: int = 1,
    max_depth_m: float = np.inf,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Every valid pixel -> (float32 [N, 3] world points in metres, uint8 [N, 3] colours or None).

    Invalid pixels (NaN, inf, <= 0 or beyond `max_depth_m`) are dropped. `stride` subsamples rows
    and columns (cheap preview clouds).
    """
    depth_m = np.asarray(depth_m)
    if depth_m.ndim != 2:
        raise ValueError(f"backproject_depth: expected depth_m [H, W] in metres, got shape {list(depth_m.shape)}")
    if stride < 1:
        raise ValueError(f"backproject_depth: expected stride >= 1, got {stride}")
    if rgb is not None and np.shape(rgb)[:2] != depth_m.shape:
        raise ValueError(f"backproject_depth: expected rgb [H, W, 3] matching depth {list(depth_m.shape)}, got {list(np.shape(rgb))}")
    h, w = depth_m.shape
    v, u = np.mgrid[0:h:stride, 0:w:stride]
    z = depth_m[::stride, ::stride].astype(np.float64)
    valid = np.isfinite(z) & (z > 0) & (z <= max_depth_m)
    pts = camera_to_world(pixels_to_camera(u[valid], v[valid], z[valid], K), T_world_cam).astype(np.float32)
    colors = None if rgb is None else np.asarray(rgb)[::stride, ::stride][valid][:, :3].astype(np.uint8)
    return pts, colors


def project_points(points_world: np.ndarray, K: np.ndarray, T_world_cam: np.ndarray | None = None) -> np.ndarray:
    """World points [N, 3] -> float64 [N, 2] pixel coordinates (NaN for points behind the camera)."""
    T = _check_T(T_world_cam)
    K = _check_K(K)
    T_cam_world = np.linalg.inv(T)
    p = np.asarray(points_world, np.float64) @ T_cam_world[:3, :3].T + T_cam_world[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.stack([K[0, 0] * p[:, 0] / p[:, 2] + K[0, 2], K[1, 1] * p[:, 1] / p[:, 2] + K[1, 2]], axis=-1)
    uv[p[:, 2] <= 0] = np.nan
    return uv


def lift_points_px(
    points_px: np.ndarray,
    depth_m: np.ndarray,
    K: np.ndarray,
    T_world_cam: np.ndarray | None = None,
    window: int = 0,
) -> np.ndarray:
    """2-D pixel points [N, 2] (x, y) -> float32 [N, 3] world points using the depth at each point.

    Pixel coordinates follow K's OpenCV convention (pixel centres at integers); points from
    `molmoact2.spatial` (edges at 0 and width) are half a pixel off: see `spatial_session.lift_to_world`.

    `window` > 0 takes the median of valid depths in a (2*window+1)^2 box, which survives a point
    that lands on an object's edge or a missing return. A point with no valid depth gives NaNs;
    a point outside the image is an error (it is a bug upstream, not a missing measurement).
    """
    pts = np.asarray(points_px, dtype=np.float64).reshape(-1, 2)
    depth_m = np.asarray(depth_m)
    if depth_m.ndim != 2:
        raise ValueError(f"lift_points_px: expected depth_m [H, W], got shape {list(depth_m.shape)}")
    h, w = depth_m.shape
    col = np.rint(pts[:, 0]).astype(np.int64)
    row = np.rint(pts[:, 1]).astype(np.int64)
    outside = (col < 0) | (col >= w) | (row < 0) | (row >= h)
    if outside.any():
        bad = pts[outside][:3].tolist()
        raise ValueError(f"lift_points_px: expected pixel points inside the {w}x{h} image, got {bad}")
    z = np.empty(len(pts), np.float64)
    for i, (r, c) in enumerate(zip(row, col)):
        box = depth_m[max(r - window, 0): r + window + 1, max(c - window, 0): c + window + 1].astype(np.float64)
        good = box[np.isfinite(box) & (box > 0)]
        z[i] = np.median(good) if good.size else np.nan
    return camera_to_world(pixels_to_camera(pts[:, 0], pts[:, 1], z, K), T_world_cam).astype(np.float32)


@dataclass(frozen=True)
class CloudConfig:
    # 5 mm voxels keep a tabletop cloud around 10^4-10^5 points: enough to see objects, cheap to log.
    voxel_size_m: float = 0.005
    estimate_normals: bool = True
    # Normals from 30 neighbours within 4 voxels: robust on flat tabletops without blurring box edges much.
    normal_radius_m: float = 0.02
    normal_max_nn: int = 30
    max_depth_m: float = 5.0
    stride: int = 1


def to_open3d(points: np.ndarray, colors: np.ndarray | None = None) -> Any:
    import open3d as o3d

    pcd = o3d.geometry.PointCloud()
    pcd.points = o3d.utility.Vector3dVector(np.asarray(points, np.float64).reshape(-1, 3))
    if colors is not None:
        c = np.asarray(colors)
        pcd.colors = o3d.utility.Vector3dVector((c.astype(np.float64) / 255.0) if c.dtype == np.uint8 else c.astype(np.float64))
    return pcd


def point_cloud(
    depth_m: np.ndarray, K: np.ndarray, T_world_cam: np.ndarray | None = None, rgb: np.ndarray | None = None,
    config: CloudConfig = CloudConfig(),
) -> Any:
    """Depth (+ colour) -> voxel-downsampled Open3D cloud in the world frame, with normals when asked."""
    pts, colors = backproject_depth(depth_m, K, T_world_cam, rgb, config.stride, config.max_depth_m)
    if len(pts) == 0:
        raise ValueError("point_cloud: depth has no valid pixels (all NaN, <= 0 or beyond max_depth_m)")
    pcd = to_open3d(pts, colors)
    if config.voxel_size_m > 0:
        pcd = pcd.voxel_down_sample(config.voxel_size_m)
    if config.estimate_normals:
        import open3d as o3d

        pcd.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=config.normal_radius_m, max_nn=config.normal_max_nn))
        if T_world_cam is not None:
            # Normals point back at the camera, so shading is consistent.
            pcd.orient_normals_towards_camera_location(np.asarray(T_world_cam, np.float64)[:3, 3])
    return pcd


def frame_point_cloud(frame: "CameraFrame", config: CloudConfig = CloudConfig()) -> Any:
    """A `CameraFrame` with depth and intrinsics -> Open3D cloud (world frame when T_world_cam is set)."""
    if frame.depth_m is None or frame.K is None:
        raise ValueError("frame_point_cloud: expected a CameraFrame with depth_m and K, got one without " +
                         ("depth_m" if frame.depth_m is None else "K"))
    return point_cloud(frame.depth_m, frame.K, frame.T_world_cam, frame.rgb, config)


def cloud_arrays(pcd: Any) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Open3D cloud -> (float32 points, uint8 colours or None, float32 normals or None) for Rerun/plots."""
    pts = np.asarray(pcd.points, dtype=np.float32)
    colors = (np.clip(np.asarray(pcd.colors) * 255.0, 0, 255).round().astype(np.uint8)) if pcd.has_colors() else None
    normals = np.asarray(pcd.normals, dtype=np.float32) if pcd.has_normals() else None
    return pts, colors, normals


def save_ply(pcd: Any, path: str | os.PathLike) -> Path:
    import open3d as o3d

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not o3d.io.write_point_cloud(str(path), pcd, write_ascii=False):
        raise OSError(f"save_ply: Open3D could not write {path}")
    return path
