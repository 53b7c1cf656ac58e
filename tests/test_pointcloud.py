"""Back-projection, lifting and Open3D clouds on a synthetic plane seen by a known camera."""

from __future__ import annotations

import numpy as np
import pytest

from molmoact2.geometry import pointcloud as pc

K = np.array([[100.0, 0, 32.0], [0, 100.0, 24.0], [0, 0, 1]])


def _T_world_cam() -> np.ndarray:
    """Camera 1 m above the origin looking straight down (OpenCV: z forward = world -z)."""
    T = np.eye(4)
    T[:3, :3] = np.array([[1, 0, 0], [0, -1, 0], [0, 0, -1]], float)
    T[:3, 3] = [0.1, 0.2, 1.0]
    return T


def test_backproject_plane_lands_on_z0_and_roundtrips_projection():
    depth = np.full((48, 64), 1.0, np.float32)
    depth[0, 0] = np.nan
    depth[1, 1] = 0.0
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[..., 0] = 255
    pts, colors = pc.backproject_depth(depth, K, _T_world_cam(), rgb)
    assert pts.shape == (48 * 64 - 2, 3) and colors.shape == pts.shape and pts.dtype == np.float32
    np.testing.assert_allclose(pts[:, 2], 0.0, atol=1e-6)
    # principal point (32, 24) -> straight below the camera
    centre = pc.backproject_depth(np.pad(np.ones((1, 1)), ((24, 23), (32, 31)), constant_values=np.nan), K, _T_world_cam())[0]
    np.testing.assert_allclose(centre[0], [0.1, 0.2, 0.0], atol=1e-6)
    uv = pc.project_points(pts, K, _T_world_cam())
    v, u = np.mgrid[0:48, 0:64]
    keep = np.isfinite(depth) & (depth > 0)
    np.testing.assert_allclose(uv, np.stack([u[keep], v[keep]], -1), atol=1e-4)
    assert (colors[:, 0] == 255).all()


def test_lift_points_px_with_window_and_errors():
    depth = np.full((48, 64), 2.0, np.float32)
    depth[10, 10] = np.nan
    p = pc.lift_points_px(np.array([[32.0, 24.0], [10.0, 10.0]]), depth, K)
    np.testing.assert_allclose(p[0], [0, 0, 2.0], atol=1e-6)
    assert np.isnan(p[1]).all()  # no valid depth under the point and no window
    p = pc.lift_points_px(np.array([[10.0, 10.0]]), depth, K, window=1)
    np.testing.assert_allclose(p[0], [(10 - 32) * 2 / 100, (10 - 24) * 2 / 100, 2.0], atol=1e-6)
    with pytest.raises(ValueError, match="inside the 64x48 image"):
        pc.lift_points_px(np.array([[64.0, 0.0]]), depth, K)
    with pytest.raises(ValueError, match="T_world_cam"):
        pc.backproject_depth(depth, K, np.eye(3))


def test_open3d_cloud_voxels_normals_and_ply(tmp_path):
    o3d = pytest.importorskip("open3d")
    depth = np.full((96, 128), 1.0, np.float32)
    K2 = np.array([[200.0, 0, 64.0], [0, 200.0, 48.0], [0, 0, 1]])
    rgb = np.full((96, 128, 3), 100, np.uint8)
    full = pc.point_cloud(depth, K2, _T_world_cam(), rgb, pc.CloudConfig(voxel_size_m=0.0, estimate_normals=False))
    assert len(full.points) == 96 * 128
    cloud = pc.point_cloud(depth, K2, _T_world_cam(), rgb, pc.CloudConfig(voxel_size_m=0.02))
    assert 0 < len(cloud.points) < len(full.points) / 4
    pts, colors, normals = pc.cloud_arrays(cloud)
    assert colors is not None and (colors == 100).all()
    # A floor seen from above: normals point up (+z), towards the camera.
    assert normals is not None and np.all(normals[:, 2] > 0.99)
    path = pc.save_ply(cloud, tmp_path / "cloud.ply")
    back = o3d.io.read_point_cloud(str(path))
    assert len(back.points) == len(cloud.points)
    with pytest.raises(ValueError, match="no valid pixels"):
        pc.point_cloud(np.full((4, 4), np.nan), K2)
