"""Bimanual world: two SO-101 arms facing each other across one table (12-D actions/state), three
cameras (`front` overview + one wrist camera per arm) -- the layout of MolmoAct2-BimanualYAM
(two arms, three cameras) with SO-101s.

Task `handover`: the object starts within reach of the LEFT arm only and the bin within reach of
the RIGHT arm only, so the left arm must set it down at the meeting point in the middle and the
right arm carries it on. "left"/"right" as seen in the front camera (left arm at world -y).
"""

from __future__ import annotations

import math

import numpy as np

from molmoact2.sim.env import SimEnv, WorldVariant
from molmoact2.sim.scene import COLOURS, SHAPES, ArmMount, SceneConfig, SceneObject, _shape_dims
from molmoact2.sim.tasks import Task, TaskInstance
from molmoact2.sim.units import tile_names

ARM_Y = 0.22  # arms at (TABLE_X, -+ARM_Y), 0.44 m apart: the middle is within both reaches
TABLE_X = 0.15
HANDOVER_XY = np.array([TABLE_X - 0.04, 0.0])  # meeting point, clear of the bin


def _layout(rng: np.random.Generator, cfg: SceneConfig, first_label: int) -> list[SceneObject]:
    colours = list(rng.permutation(list(COLOURS)))
    # Bin: right arm only (>0.3 m from the left base); object: left arm only.
    bin_xy = np.array([TABLE_X + rng.uniform(0.07, 0.09), ARM_Y - rng.uniform(0.15, 0.17)])
    objects = [SceneObject("bin", "", "bin", first_label, "bin", (*bin_xy, 0.0), float(rng.uniform(-0.3, 0.3)),
                           cfg.bin_wall_height_m / 2, cfg.bin_inner_half_m, graspable=False)]
    shapes = list(SHAPES)
    spots = [
        np.array([TABLE_X - rng.uniform(0.03, 0.07), -ARM_Y + rng.uniform(0.14, 0.17)]),  # the object to hand over
        np.array([TABLE_X + rng.uniform(0.16, 0.19), rng.uniform(-0.12, -0.06)]),  # a distractor, off the paths
    ]
    for i, xy in enumerate(spots):
        shape = shapes[int(rng.integers(len(shapes)))]
        hh, hw = _shape_dims(shape)
        objects.append(SceneObject(
            f"{colours[i]} {shape}", colours[i], shape, first_label + 1 + i, f"obj{i}", (float(xy[0]), float(xy[1]), hh + 0.001),
            float(rng.uniform(-math.pi, math.pi)), hh, hw,
        ))
    return objects


class Handover(Task):
    name = "handover"
    time_limit_steps = 900
    templates = (
        "hand {obj} over to the right arm and put it in the bin",
        "pass {obj} from the left arm to the right arm, then drop it in the bin",
    )

    def candidates(self, scene) -> list:
        return [scene.objects[1]]  # the layout puts the object to hand over first; the expert plans for it

    def instantiate(self, scene, rng) -> TaskInstance | None:
        target = self.candidates(scene)[0]
        template = self.templates[int(rng.integers(len(self.templates)))]
        return TaskInstance(self.name, target.name, template.format(obj=f"the {target.name}"), np.array(target.pos))

    def success(self, env, inst: TaskInstance) -> bool:
        return env.object_in_bin(inst.target) and not env.gripper_touches(inst.target)

    def make_phases(self, env):
        from molmoact2.sim.expert import Planner, pick_phases

        left, right = Planner(env, 0), Planner(env, 1)
        target = env.instance.target
        grasp_z = max(float(env.object_pos(target)[2]), 0.016)

        def park_left(P, s):
            # Out of the right arm's way: back to the left arm's start pose.
            goal = s.copy()
            goal[0:6] = env.scene.home_units[0:6]
            n = int(0.8 * env.fps)
            from molmoact2.sim.expert import min_jerk

            return s + min_jerk(n)[:, None] * (goal - s)[None, :]

        phases = pick_phases(env, target, lambda: HANDOVER_XY, arm=0, release_z=grasp_z + 0.004)
        phases.append(park_left)
        phases += pick_phases(env, target, lambda: env.object_pos("bin")[:2], arm=1)
        return phases, [left, right]


BIMANUAL_TASKS = {"handover": Handover()}

BIMANUAL = WorldVariant(
    name="so101_bimanual",
    mounts=(
        ArmMount("left/", pos=(TABLE_X, -ARM_Y, 0.0), yaw_rad=math.pi / 2, label_name="left arm"),
        ArmMount("right/", pos=(TABLE_X, ARM_Y, 0.0), yaw_rad=-math.pi / 2, label_name="right arm"),
    ),
    camera_map=(("front", "front"), ("left_wrist", "left/wrist"), ("right_wrist", "right/wrist")),
    state_names=tile_names(("left_", "right_")),
    tasks=BIMANUAL_TASKS,
    front_eye=(0.62, 0.0, 0.48),
    front_target=(TABLE_X, 0.0, 0.05),
    layout=_layout,
    # Folded back (gripper ~0.16 m out, 0.16 m up): two arms 0.44 m apart keep a gap at rest.
    home_units=(0.0, -90.0, 40.0, 95.0, 0.0, 25.0),
)


def make_bimanual_env(task: str = "handover", seed: int = 0, image_size: int = 224,
                      cameras: tuple[str, ...] = ("front", "left_wrist", "right_wrist"),
                      depth: bool = True, segmentation: bool = True) -> SimEnv:
    return SimEnv(task, seed=seed, image_size=image_size, cameras=cameras, depth=depth, segmentation=segmentation,
                  variant=BIMANUAL)
