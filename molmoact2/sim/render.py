"""Offscreen camera rendering: RGB + metric depth in ONE render pass, segmentation in an optional second.

Why not `mujoco.Renderer`: it renders the scene again for every buffer it reads (RGB, then depth),
which halves the frame rate with depth on. Here one `mjr_render` fills both buffers and both are
read back together. GL contexts are pooled per (thread, width, height) -- an EGL context can be
current in one thread only, and Gradio runs handlers in worker threads.
"""

from __future__ import annotations

import atexit
import math
import threading

import numpy as np

from molmoact2.models.base import CameraFrame

_GL_POOL: dict[tuple[int, int, int], object] = {}
_POOL_LOCK = threading.Lock()
# MuJoCo cameras look along -z with y up; OpenCV cameras look along +z with y down.
_MJ_TO_CV = np.diag([1.0, -1.0, -1.0])


def _gl_context(width: int, height: int):
    import mujoco

    key = (threading.get_ident(), width, height)
    with _POOL_LOCK:
        ctx = _GL_POOL.get(key)
        if ctx is None:
            first = not _GL_POOL
            ctx = mujoco.GLContext(width, height)
            _GL_POOL[key] = ctx
            if first:
                # Free our contexts before MuJoCo's EGL module terminates the display at exit: atexit
                # runs last-registered first, and mujoco.egl registers eglTerminate in the first context.
                atexit.register(_release_all)
    ctx.make_current()
    return ctx


def _release_all() -> None:
    with _POOL_LOCK:
        contexts = list(_GL_POOL.values())
        _GL_POOL.clear()
    for ctx in contexts:
        try:
            ctx.free()
        except Exception:
            # Another library (e.g. dm_control inside gym-aloha) terminated the shared EGL display
            # first; the context is gone with it. Forget it so its __del__ does not retry noisily.
            ctx._context = None


def release_thread_gl_contexts() -> int:
    """Free the GL contexts this thread created (call when a worker thread is done rendering, after
    closing its envs): each thread gets its own EGL context, so short-lived threads would leak them."""
    me = threading.get_ident()
    with _POOL_LOCK:
        keys = [k for k in _GL_POOL if k[0] == me]
        contexts = [_GL_POOL.pop(k) for k in keys]
    for ctx in contexts:
        ctx.free()
    return len(contexts)


def intrinsics(fovy_deg: float, width: int, height: int) -> np.ndarray:
    """Pixel intrinsics K (OpenCV: pixel centres at integer coordinates) of a MuJoCo camera with vertical fovy."""
    f = 0.5 * height / math.tan(math.radians(fovy_deg) / 2)
    return np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])


def camera_pose(data, cam_id: int) -> np.ndarray:
    """T_world_cam [4, 4] in the OpenCV camera convention (x right, y down, z forward)."""
    T = np.eye(4)
    T[:3, :3] = data.cam_xmat[cam_id].reshape(3, 3) @ _MJ_TO_CV
    T[:3, 3] = data.cam_xpos[cam_id]
    return T


class CameraRig:
    """Renders named cameras of one compiled model at one size. Create once per model; call `close()`."""

    def __init__(self, model, width: int = 224, height: int = 224, geom_label: np.ndarray | None = None) -> None:
        import mujoco

        if width > model.vis.global_.offwidth or height > model.vis.global_.offheight:
            raise ValueError(
                f"CameraRig: image {width}x{height} exceeds the model's offscreen buffer "
                f"{model.vis.global_.offwidth}x{model.vis.global_.offheight}"
            )
        self.model, self.width, self.height = model, width, height
        self.geom_label = geom_label
        self._thread = threading.get_ident()
        _gl_context(width, height)
        self._ctx = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_100.value)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN.value, self._ctx)
        self._ctx.readDepthMap = mujoco.mjtDepthMap.mjDEPTH_ZEROFAR
        self._scene = mujoco.MjvScene(model, maxgeom=2000)
        self._opt = mujoco.MjvOption()
        self._cam = mujoco.MjvCamera()
        self._cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._rect = mujoco.MjrRect(0, 0, width, height)
        self._rgb = np.empty((height, width, 3), np.uint8)
        self._depth = np.empty((height, width), np.float32)
        extent = model.stat.extent
        near, far = model.vis.map.znear * extent, model.vis.map.zfar * extent
        # Reverse-Z projection constants (as mujoco.Renderer): metric z = d / (buffer + c).
        c = -(far + near) / (far - near)
        dd = -(2 * far * near) / (far - near)
        self._c, self._d = -0.5 * c - 0.5, -0.5 * dd

    def camera_id(self, name: str) -> int:
        import mujoco

        cam_id = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, name)
        if cam_id < 0:
            names = [self.model.camera(i).name for i in range(self.model.ncam)]
            raise ValueError(f"unknown camera {name!r}; expected one of {names}")
        return cam_id

    def render(self, data, camera: str, depth: bool = True, segmentation: bool = False) -> CameraFrame:
        import mujoco

        if threading.get_ident() != self._thread:
            raise RuntimeError("CameraRig: render from the thread that created it (EGL contexts are per thread)")
        _gl_context(self.width, self.height)
        # Rigs of the same size in one thread share a GL context, and the bound framebuffer is GL state:
        # without re-binding OUR offscreen buffer, readPixels would return the last-created rig's picture.
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN.value, self._ctx)
        cam_id = self.camera_id(camera)
        self._cam.fixedcamid = cam_id
        mujoco.mjv_updateScene(self.model, data, self._opt, None, self._cam, mujoco.mjtCatBit.mjCAT_ALL.value, self._scene)
        mujoco.mjr_render(self._rect, self._scene, self._ctx)
        mujoco.mjr_readPixels(self._rgb, self._depth if depth else None, self._rect, self._ctx)
        rgb = np.flipud(self._rgb).copy()
        depth_m = None
        if depth:
            raw = np.flipud(self._depth).astype(np.float64)
            with np.errstate(divide="ignore"):
                z = self._d / (raw + self._c)
            z[raw <= 0.0] = np.nan  # reverse-Z: 0 = far plane = no surface hit
            depth_m = z.astype(np.float32)
        seg = self._segmentation(data) if segmentation else None
        return CameraFrame(
            rgb=rgb, depth_m=depth_m, segmentation=seg,
            K=intrinsics(float(self.model.cam_fovy[cam_id]), self.width, self.height),
            T_world_cam=camera_pose(data, cam_id),
        )

    def _segmentation(self, data) -> np.ndarray:
        import mujoco

        flags = self._scene.flags
        flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = True
        flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = True
        try:
            mujoco.mjr_render(self._rect, self._scene, self._ctx)
            mujoco.mjr_readPixels(self._rgb, None, self._rect, self._ctx)
        finally:
            flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = False
            flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = False
        img = np.flipud(self._rgb).astype(np.int64)
        segid = img[..., 0] + img[..., 1] * 256 + img[..., 2] * 65536  # 0 = background, else scene geom segid + 1
        n = self._scene.ngeom
        lut = np.full(n + 2, -1, dtype=np.int32)
        for g in self._scene.geoms[:n]:
            if g.segid >= 0 and g.objtype == mujoco.mjtObj.mjOBJ_GEOM:
                lut[g.segid + 1] = self.geom_label[g.objid] if self.geom_label is not None else g.objid
        return lut[np.clip(segid, 0, n + 1)]

    def close(self) -> None:
        if getattr(self, "_ctx", None) is not None:
            self._ctx.free()
            self._ctx = None

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass
