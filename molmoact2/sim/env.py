"""`SimEnv`: a gymnasium-style SO-101 tabletop environment speaking MolmoAct2-SO100_101's action space.

Action = absolute joint targets, 6-D per arm (5 joints + gripper) in LeRobot normalized units
(`molmoact2.sim.units`), 30 Hz. Observation = `molmoact2.models.base.Observation` with the cameras
in order (first = main image), each a `CameraFrame` with RGB, metric depth, segmentation, K and
T_world_cam. Targets beyond the joint limits are clipped and the clip is reported in `info`;
NaN or wrongly shaped actions raise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from molmoact2.models.base import Observation
from molmoact2.sim.scene import ArmMount, Scene, SceneConfig, build_scene
from molmoact2.sim.tasks import TASKS, Task, TaskInstance, get_task
from molmoact2.sim.units import ACTION_UNITS, FEATURE_NAMES, UNIT_HIGH, UNIT_LOW, rad_to_units, units_to_rad

MAX_CHUNK = 30  # steps: one second at 30 Hz, like MolmoAct2-SO100_101


@dataclass(frozen=True)
class WorldVariant:
    """Which robots and cameras a world has. The single-arm SO-101 world is the default."""

    name: str = "so101"
    mounts: tuple[ArmMount, ...] = (ArmMount("so101/"),)
    # user-facing camera name -> MJCF camera name; order = observation order (first = main image)
    camera_map: tuple[tuple[str, str], ...] = (("front", "front"), ("wrist", "so101/wrist"))
    state_names: tuple[str, ...] = FEATURE_NAMES
    tasks: dict = field(default_factory=lambda: TASKS)
    front_eye: tuple[float, float, float] = (0.62, 0.0, 0.42)
    front_target: tuple[float, float, float] = (0.16, 0.0, 0.0)
    layout: object = None  # callable(rng, cfg, first_label) -> objects; None = default sampler
    extra_cameras: dict | None = None
    home_units: tuple[float, ...] = (0.0, -35.0, 40.0, 55.0, 0.0, 25.0)  # per arm, robot units


SO101 = WorldVariant()


class SimEnv:
    """One MuJoCo world. `reset(seed)` rebuilds the randomized scene; `step(action)` advances 1/30 s."""

    metadata = {"render_fps": 30}

    def __init__(
        self,
        task: str,
        seed: int = 0,
        image_size: int | tuple[int, int] = 224,
        cameras: tuple[str, ...] = ("front", "wrist"),
        depth: bool = True,
        segmentation: bool = True,
        variant: WorldVariant = SO101,
        scene_config: SceneConfig = SceneConfig(),
    ) -> None:
        self.variant = variant
        self.task: Task = get_task(task, variant.tasks)
        valid = [c for c, _ in variant.camera_map]
        unknown = [c for c in cameras if c not in valid]
        if unknown or not cameras:
            raise ValueError(f"cameras: expected a non-empty subset of {valid}, got {list(cameras)}")
        self.cameras = tuple(cameras)
        self.image_wh = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.depth, self.segmentation = depth, segmentation
        self.scene_config = scene_config
        self.fps = scene_config.control_hz
        n = len(variant.mounts)
        self.action_names: tuple[str, ...] = variant.state_names
        self.state_names: tuple[str, ...] = variant.state_names
        self.action_units = ACTION_UNITS
        self.action_low = np.tile(UNIT_LOW, n)
        self.action_high = np.tile(UNIT_HIGH, n)
        self.action_dim = 6 * n
        self._rig = None
        self._seed = seed
        self.scene: Scene | None = None
        self.data = None
        self.instance: TaskInstance | None = None
        self.steps = 0
        self._built_seed: int | None = None

    # ---- public API --------------------------------------------------------------------------
    @staticmethod
    def task_names(variant: WorldVariant = SO101) -> list[str]:
        return sorted(variant.tasks)

    @property
    def model(self):
        return self.scene.model if self.scene else None

    @property
    def instruction(self) -> str:
        return self.instance.instruction if self.instance else ""

    @property
    def time_limit_steps(self) -> int:
        return self.task.time_limit_steps

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[Observation, dict]:
        import mujoco

        seed = self._seed if seed is None else int(seed)
        self._seed = seed
        rng = np.random.default_rng([seed, 7])
        for attempt in range(50):
            # Attempt 0 uses the seed itself; later attempts derive new layouts until the task fits.
            scene_seed = seed if attempt == 0 else int(np.random.default_rng([seed, attempt]).integers(2**31))
            scene = build_scene(
                scene_seed, self.scene_config, self.variant.mounts, layout=self.variant.layout,
                front_eye=self.variant.front_eye, front_target=self.variant.front_target,
                extra_cameras=self.variant.extra_cameras, home_units=self.variant.home_units,
            )
            instance = self.task.instantiate(scene, rng)
            if instance is not None:
                break
        else:
            raise RuntimeError(f"task {self.task.name!r}: no feasible scene found for seed {seed} in 50 layouts")
        options = dict(options or {})
        unknown = sorted(set(options) - {"target"})
        if unknown:
            raise ValueError(f"reset options: only 'target' (an object name) is understood, got {unknown}")
        if options.get("target") is not None:  # same layout, another named object (see Task.retarget)
            instance = self.task.retarget(scene, instance, str(options["target"]))
        self.scene, self.instance = scene, instance
        self.data = mujoco.MjData(scene.model)
        self._kin = None
        q = self._units_to_rad(scene.home_units)
        for i, arm in enumerate(scene.arms):
            self.data.qpos[arm.qpos_adr] = q[6 * i : 6 * i + 6]
            self.data.ctrl[arm.actuator_ids] = q[6 * i : 6 * i + 6]
        mujoco.mj_forward(scene.model, self.data)
        for _ in range(int(0.2 * self.fps * self.scene_config.substeps)):  # let objects settle on the table
            mujoco.mj_step(scene.model, self.data)
        self.data.time = 0.0
        self.steps = 0
        self.instance.start_pos = self.object_pos(instance.target).copy()
        if self._rig is not None:
            self._rig.close()
        from molmoact2.sim.render import CameraRig

        self._rig = CameraRig(scene.model, *self.image_wh, geom_label=scene.geom_label)
        obs = self.observe()
        return obs, self._info(clipped=np.zeros(self.action_dim, bool))

    def target_options(self) -> list[str]:
        """Objects of the current layout this task could be about (`reset(seed, options={"target": name})`)."""
        if self.scene is None:
            raise RuntimeError("SimEnv.target_options: call reset() first")
        return [o.name for o in self.task.candidates(self.scene)]

    def step(self, action, *, observe: bool = True) -> tuple[Observation | None, float, bool, bool, dict]:
        """Advance one control tick. `observe=False` skips rendering (the observation is None): a
        closed loop that only looks at the last frame of a chunk renders 15x less."""
        import mujoco

        if self.data is None:
            raise RuntimeError("SimEnv.step: call reset() first")
        action = self._check_action(action)
        clipped_action = np.clip(action, self.action_low, self.action_high)
        clipped = clipped_action != action
        q = self._units_to_rad(clipped_action)
        for i, arm in enumerate(self.scene.arms):
            self.data.ctrl[arm.actuator_ids] = q[6 * i : 6 * i + 6]
        for _ in range(self.scene_config.substeps):
            mujoco.mj_step(self.scene.model, self.data)
        self.steps += 1
        success = bool(self.task.success(self, self.instance))
        truncated = (not success) and self.steps >= self.task.time_limit_steps
        obs = self.observe() if observe else None
        info = self._info(clipped=clipped, action=action, applied=clipped_action)
        return obs, float(success), success, truncated, info

    def observe(self) -> Observation:
        frames = {}
        cmap = dict(self.variant.camera_map)
        for name in self.cameras:
            frames[name] = self._rig.render(self.data, cmap[name], depth=self.depth, segmentation=self.segmentation)
        return Observation(
            cameras=frames, state=self.state().astype(np.float32), instruction=self.instruction,
            state_names=self.state_names, timestamp_s=self.steps / self.fps,
        )

    def state(self) -> np.ndarray:
        """Joint positions in robot units [6 * n_arms]."""
        q = np.concatenate([self.data.qpos[a.qpos_adr] for a in self.scene.arms])
        return self._rad_to_units(q)

    def expert(self, chunk_size: int = MAX_CHUNK):
        """A scripted expert for the current task (privileged: reads object poses from the sim)."""
        from molmoact2.sim.expert import make_expert

        return make_expert(self, chunk_size=chunk_size)

    def close(self) -> None:
        if self._rig is not None:
            self._rig.close()
            self._rig = None

    # ---- world queries (used by tasks and experts) ---------------------------------------------
    def object_pos(self, name: str) -> np.ndarray:
        obj = self.scene.object(name)
        return self.data.xpos[self.scene.model.body(obj.body).id].copy()

    def object_xmat(self, name: str) -> np.ndarray:
        obj = self.scene.object(name)
        return self.data.xmat[self.scene.model.body(obj.body).id].reshape(3, 3).copy()

    def object_geoms(self, name: str) -> np.ndarray:
        body = self.scene.model.body(self.scene.object(name).body).id
        return np.flatnonzero(self.scene.model.geom_bodyid == body)

    def gripper_touches(self, name: str, arm: int | None = None) -> bool:
        arms = self.scene.arms if arm is None else [self.scene.arms[arm]]
        grip = np.concatenate([a.gripper_geom_ids for a in arms])
        obj = self.object_geoms(name)
        n = self.data.ncon
        if n == 0:
            return False
        g1, g2 = self.data.contact.geom1[:n], self.data.contact.geom2[:n]
        return bool(np.any((np.isin(g1, grip) & np.isin(g2, obj)) | (np.isin(g2, grip) & np.isin(g1, obj))))

    def in_bin_frame(self, pos: np.ndarray, bin_name: str = "bin") -> np.ndarray:
        """A world point [3] in the bin's own frame (origin at its body, axes along its walls), metres."""
        bin_body = self.scene.model.body(self.scene.object(bin_name).body).id
        R = self.data.xmat[bin_body].reshape(3, 3)
        return R.T @ (np.asarray(pos) - self.data.xpos[bin_body])

    def object_in_bin(self, name: str, bin_name: str = "bin") -> bool:
        local = self.in_bin_frame(self.object_pos(name), bin_name)
        inner = self.scene_config.bin_inner_half_m
        return bool(abs(local[0]) < inner and abs(local[1]) < inner and local[2] < self.scene_config.bin_wall_height_m + 0.01)

    def kinematics(self, arm: int = 0):
        from molmoact2.sim.kinematics import ArmKinematics

        if self._kin is None:
            self._kin = [ArmKinematics(self.scene.model, a) for a in self.scene.arms]
        return self._kin[arm]

    def planned_path(self, chunk_units: np.ndarray, obs: Observation | None = None):
        """FK of a chunk [H, 6*n] -> (path_world [H, 3] of arm 0 ... concatenated per arm as [H*n, 3], px per camera)."""
        from molmoact2.sim.kinematics import planned_path_px

        chunk = self._check_chunk(chunk_units)
        paths = [self.kinematics(i).path_world(chunk[:, 6 * i : 6 * i + 6]) for i in range(len(self.scene.arms))]
        world = np.concatenate(paths, axis=0)
        px = planned_path_px(world, obs.cameras) if obs is not None else {}
        return world, px

    # ---- helpers -------------------------------------------------------------------------------
    def _units_to_rad(self, units: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [units_to_rad(units[6 * i : 6 * i + 6], a.joint_range_rad) for i, a in enumerate(self.scene.arms)]
        )

    def _rad_to_units(self, q: np.ndarray) -> np.ndarray:
        return np.concatenate([rad_to_units(q[6 * i : 6 * i + 6], a.joint_range_rad) for i, a in enumerate(self.scene.arms)])

    def _check_action(self, action) -> np.ndarray:
        arr = np.asarray(action, dtype=np.float64)
        if arr.shape != (self.action_dim,):
            raise ValueError(
                f"SimEnv.step: expected an action of shape [{self.action_dim}] ({', '.join(self.action_names)}; "
                f"{self.action_units}), got shape {list(arr.shape)}"
            )
        if not np.all(np.isfinite(arr)):
            bad = [self.action_names[i] for i in np.flatnonzero(~np.isfinite(arr))]
            raise ValueError(f"SimEnv.step: action has NaN/inf in {bad}; expected finite joint targets")
        return arr

    def _check_chunk(self, chunk) -> np.ndarray:
        arr = np.asarray(chunk, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != self.action_dim:
            raise ValueError(f"expected a chunk [H, {self.action_dim}], got {list(arr.shape)}")
        return arr

    def _info(self, clipped: np.ndarray, action=None, applied=None) -> dict:
        info = {
            "task": self.task.name,
            "instruction": self.instruction,
            "target": self.instance.target,
            "step": self.steps,
            "time_limit_steps": self.task.time_limit_steps,
            "success": bool(self.task.success(self, self.instance)) if self.steps else False,
            "clipped": bool(np.any(clipped)),
            "clipped_dims": [self.action_names[i] for i in np.flatnonzero(clipped)],
            "seed": self._seed,
            "segmentation_labels": list(self.scene.labels),
        }
        if action is not None and info["clipped"]:
            info["requested_action"] = action.copy()
            info["applied_action"] = applied.copy()
        return info


def make_env(
    task: str,
    seed: int = 0,
    image_size: int | tuple[int, int] = 224,
    cameras: tuple[str, ...] = ("front", "wrist"),
    depth: bool = True,
    segmentation: bool = True,
) -> SimEnv:
    """The SO-101 tabletop world for `task` (single-arm tasks, or `handover` in the two-arm world)."""
    if task not in task_names():
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(task_names())}")
    if task in _bimanual_tasks():
        from molmoact2.sim.bimanual import make_bimanual_env

        if tuple(cameras) == ("front", "wrist"):  # the single-arm default: use the bimanual three
            cameras = ("front", "left_wrist", "right_wrist")
        return make_bimanual_env(task, seed=seed, image_size=image_size, cameras=cameras, depth=depth, segmentation=segmentation)
    return SimEnv(task, seed=seed, image_size=image_size, cameras=cameras, depth=depth, segmentation=segmentation)


def _bimanual_tasks() -> set[str]:
    try:
        from molmoact2.sim.bimanual import BIMANUAL_TASKS
    except ImportError:
        return set()
    return set(BIMANUAL_TASKS)


def task_names() -> list[str]:
    return sorted(set(TASKS) | _bimanual_tasks())
