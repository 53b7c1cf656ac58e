"""Language-conditioned tabletop tasks: instruction templates, feasibility, success checks, time limits.

"left"/"right" are as seen in the `front` camera image (the main image a policy looks at): the front
camera faces the robot, so image-left is world -y.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from molmoact2.sim.scene import Scene, SceneObject


@dataclass
class TaskInstance:
    """One episode's goal: which object, the instruction text, and the initial state the check needs."""

    task: str
    target: str  # object name, e.g. "red cube"
    instruction: str
    start_pos: np.ndarray = field(default_factory=lambda: np.zeros(3))
    extra: dict = field(default_factory=dict)


class Task:
    name: str = ""
    time_limit_steps: int = 300  # at 30 Hz
    templates: tuple[str, ...] = ()

    def candidates(self, scene: Scene) -> list[SceneObject]:
        return [o for o in scene.objects if o.graspable]

    def instantiate(self, scene: Scene, rng: np.random.Generator) -> TaskInstance | None:
        """Pick a target and an instruction; None when this scene cannot host the task (resample it)."""
        options = self.candidates(scene)
        if not options:
            return None
        target = options[int(rng.integers(len(options)))]
        template = self.templates[int(rng.integers(len(self.templates)))]
        return TaskInstance(self.name, target.name, template.format(obj=f"the {target.name}"), np.array(target.pos))

    def retarget(self, scene: Scene, inst: TaskInstance, name: str) -> TaskInstance:
        """The same episode aimed at another object of this layout: same template, only the object's words
        change. Contrastive demos and the words-vs-layout check need one layout with several named targets."""
        names = [o.name for o in self.candidates(scene)]
        if name not in names:
            raise ValueError(f"target {name!r}: expected one of this {self.name} layout's candidates {names}")
        obj = next(o for o in scene.objects if o.name == name)
        instruction = inst.instruction.replace(f"the {inst.target}", f"the {name}", 1)
        return TaskInstance(self.name, name, instruction, np.array(obj.pos), dict(inst.extra))

    def success(self, env, inst: TaskInstance) -> bool:
        raise NotImplementedError


class Touch(Task):
    name = "touch"
    time_limit_steps = 180
    templates = ("touch {obj}", "reach out and touch {obj}", "tap {obj} with the gripper")

    def success(self, env, inst: TaskInstance) -> bool:
        return env.gripper_touches(inst.target)


class PickPlace(Task):
    name = "pick_place"
    time_limit_steps = 450
    templates = (
        "pick up {obj} and place it in the bin",
        "put {obj} in the bin",
        "pick {obj} and drop it into the bin",
    )

    def success(self, env, inst: TaskInstance) -> bool:
        return env.object_in_bin(inst.target) and not env.gripper_touches(inst.target)


class Push(Task):
    time_limit_steps = 300
    push_m = 0.05  # displacement along the direction that counts as success
    clearance_m = 0.17  # free corridor the expert needs beyond the object

    def __init__(self, name: str, direction_world: tuple[float, float], word: str) -> None:
        self.name = name
        self.direction = np.array([*direction_world, 0.0])
        self.templates = (f"push {{obj}} to the {word}", f"slide {{obj}} {word}", f"nudge {{obj}} toward the {word}")

    def candidates(self, scene: Scene) -> list[SceneObject]:
        out = []
        for obj in scene.objects:
            if not obj.graspable:
                continue
            p = np.array(obj.pos)
            end = p + self.direction * self.clearance_m
            behind = p - self.direction * 0.07
            if not 0.13 < np.linalg.norm(end[:2]) < 0.33 or not 0.13 < np.linalg.norm(behind[:2]) < 0.33:
                continue  # outside the arm's comfortable reach (base at the origin)
            if all(_clear_of(other, p, behind, end) for other in scene.objects if other is not obj):
                out.append(obj)
        return out

    def success(self, env, inst: TaskInstance) -> bool:
        pos = env.object_pos(inst.target)
        moved = float((pos - inst.start_pos) @ self.direction)
        return moved >= self.push_m and pos[2] < inst.start_pos[2] + 0.02


def _clear_of(other: SceneObject, p, behind, end) -> bool:
    """True if `other` stays away from the segment behind->end that the gripper and object sweep."""
    q = np.array(other.pos)[:2]
    a, b = behind[:2], end[:2]
    t = np.clip((q - a) @ (b - a) / ((b - a) @ (b - a)), 0.0, 1.0)
    dist = np.linalg.norm(q - (a + t * (b - a)))
    radius = 0.09 if other.shape == "bin" else 0.05
    return dist > radius


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Touch(),
        PickPlace(),
        Push("push_left", (0.0, -1.0), "left"),
        Push("push_right", (0.0, 1.0), "right"),
    )
}


def get_task(name: str, registry: dict[str, Task] = TASKS) -> Task:
    if name not in registry:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(sorted(registry))}")
    return registry[name]
