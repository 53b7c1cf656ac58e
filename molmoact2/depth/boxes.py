"""A tiny MuJoCo tabletop (random boxes and cylinders, a pinhole camera) that renders depth frames.

The fallback training/test source for the depth VQ-VAE when `molmoact2.sim` is not importable
(`molmoact2.depth.data` picks the source). It returns the same `CameraFrame` as the simulator,
so swapping sources changes nothing downstream.
"""

from __future__ import annotations

import numpy as np

from molmoact2.models.base import CameraFrame


def _xml(rng: np.random.Generator) -> str:
    geoms = []
    for i in range(int(rng.integers(3, 8))):
        x, y = rng.uniform(-0.25, 0.25), rng.uniform(-0.3, 0.3)
        rgba = " ".join(f"{c:.2f}" for c in (*rng.uniform(0.1, 0.95, 3), 1.0))
        yaw = rng.uniform(0, np.pi)
        if rng.random() < 0.5:
            sx, sy, sz = rng.uniform(0.01, 0.06), rng.uniform(0.01, 0.06), rng.uniform(0.01, 0.06)
            geoms.append(f'<geom type="box" size="{sx:.3f} {sy:.3f} {sz:.3f}" pos="{x:.3f} {y:.3f} {sz:.3f}" '
                         f'euler="0 0 {yaw:.3f}" rgba="{rgba}"/>')
        else:
            r, hz = rng.uniform(0.01, 0.04), rng.uniform(0.01, 0.06)
            geoms.append(f'<geom type="cylinder" size="{r:.3f} {hz:.3f}" pos="{x:.3f} {y:.3f} {hz:.3f}" rgba="{rgba}"/>')
    # Camera on a sphere around the table centre, looking at it: front-ish views like the sim's.
    dist, elev, azim = rng.uniform(0.55, 0.9), rng.uniform(0.5, 1.1), rng.uniform(-0.6, 0.6)
    eye = np.array([-dist * np.cos(elev) * np.cos(azim), dist * np.cos(elev) * np.sin(azim), dist * np.sin(elev)])
    fovy = rng.uniform(45, 65)
    return f"""<mujoco><visual><global offwidth="320" offheight="320"/></visual><worldbody>
<light pos="0 0 2" dir="0 0 -1"/>
<geom type="box" size="0.35 0.45 0.02" pos="0 0 -0.02" rgba="0.6 0.5 0.4 1"/>
{chr(10).join(geoms)}
<body name="mover" mocap="true" pos="0 -0.3 0.03"><geom type="box" size="0.03 0.03 0.03" rgba="0.9 0.15 0.15 1"/></body>
<camera name="front" mode="targetbody" target="world" pos="{eye[0]:.3f} {eye[1]:.3f} {eye[2]:.3f}" fovy="{fovy:.1f}"/>
</worldbody></mujoco>"""


def render_boxes_frame(seed: int, width: int = 224, height: int = 224) -> CameraFrame:
    """One random scene (determined by `seed`) seen by its camera: rgb, metric depth, K, T_world_cam."""
    return render_boxes_sequence(seed, 1, width, height)[0]


def render_boxes_sequence(seed: int, n_frames: int, width: int = 224, height: int = 224,
                          brightness_step: int | None = None) -> list[CameraFrame]:
    """A static camera watching a red cube slide across the table (y from -0.3 to +0.3 m).

    `brightness_step` (frame index) switches the light to 60% from that frame on: a global
    lighting change for the MolmoThink lessons.
    """
    import mujoco

    rng = np.random.default_rng(seed)
    model = mujoco.MjModel.from_xml_string(_xml(rng))
    data = mujoco.MjData(model)
    fovy = np.deg2rad(model.cam_fovy[0])
    f = 0.5 * height / np.tan(fovy / 2)
    K = np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]])
    frames = []
    with mujoco.Renderer(model, height, width) as r:
        for k in range(n_frames):
            data.mocap_pos[0] = [0.0, -0.3 + 0.6 * k / max(n_frames - 1, 1), 0.03]
            if brightness_step is not None and k >= brightness_step:
                model.light_diffuse[0] = [0.42, 0.42, 0.42]  # 60% of the default 0.7
            mujoco.mj_forward(model, data)
            r.disable_depth_rendering()
            r.update_scene(data, camera="front")
            rgb = r.render().copy()
            r.enable_depth_rendering()
            r.update_scene(data, camera="front")
            depth = r.render().astype(np.float32)
            # MuJoCo cameras look down -z with y up; OpenCV looks down +z with y down: flip y and z.
            T = np.eye(4)
            T[:3, :3] = data.cam_xmat[0].reshape(3, 3) @ np.diag([1.0, -1.0, -1.0])
            T[:3, 3] = data.cam_xpos[0]
            depth[depth >= model.stat.extent * model.vis.map.zfar * 0.99] = np.nan
            frames.append(CameraFrame(rgb=rgb, depth_m=depth, K=K, T_world_cam=T))
    return frames
