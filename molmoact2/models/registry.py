"""One way to pick a model, shared by the CLI, the app and the notebooks.

    load_policy("nano")                          # the workbench's own small model (issue 6)
    load_policy("/data/MolmoAct2-DROID", trust_remote_code=True, dtype="bfloat16")
    load_policy("http://gpu-box:8000")           # an official (or our) /act server

Options are passed through to the backend (`HFCheckpointPolicy` or `RemotePolicy`); an option the
chosen backend does not take is an error, not silently dropped.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

from molmoact2.models.base import Policy

SPEC_HELP = (
    "a model spec is one of: 'nano' (the workbench's own small model), a local MolmoAct2 checkpoint directory "
    "(e.g. /data/MolmoAct2-DROID, downloaded beforehand with `hf download allenai/MolmoAct2-DROID --local-dir "
    "/data/MolmoAct2-DROID`), or the URL of an /act server (e.g. http://127.0.0.1:8000)"
)


def spec_kind(spec: str | os.PathLike) -> str:
    """'nano', 'remote' or 'checkpoint' (the directory may still be incomplete; `load_policy` checks)."""
    s = str(spec).strip()
    if s.lower() == "nano":
        return "nano"
    if s.lower().startswith(("http://", "https://")):
        return "remote"
    return "checkpoint"


def _call_with(factory: Any, target: Any, opts: dict[str, Any], what: str) -> Any:
    params = inspect.signature(factory).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(opts) - set(params))
        if unknown:
            allowed = sorted(k for k, p in params.items() if p.kind is p.KEYWORD_ONLY)
            raise TypeError(f"load_policy: option(s) {unknown} do not apply to {what}; it accepts {allowed}")
    return factory(target, **opts)


def load_policy(spec: str | os.PathLike, **opts: Any) -> Policy:
    """Build the Policy named by `spec` (see SPEC_HELP)."""
    if spec is None or not str(spec).strip():
        raise ValueError(f"load_policy: empty spec; {SPEC_HELP}")
    kind = spec_kind(spec)
    s = str(spec).strip()
    if kind == "nano":
        return _load_nano(**opts)
    if kind == "remote":
        from molmoact2.models.remote import RemotePolicy

        return _call_with(RemotePolicy, s, opts, "a remote /act server")
    path = Path(s).expanduser()
    if not path.exists():
        hint = ""
        if s.count("/") == 1 and not s.startswith((".", "/", "~")):
            hint = (f" It looks like a Hugging Face repo id: nothing downloads at run time here; download it first "
                    f"(`hf download {s} --local-dir DIR`) and pass DIR.")
        raise FileNotFoundError(f"load_policy: {s!r} is not 'nano', not an http(s) URL, and no such directory.{hint} "
                                f"({SPEC_HELP})")
    if not path.is_dir():
        raise ValueError(f"load_policy: {s!r} is a file; expected a checkpoint directory. {SPEC_HELP}")
    from molmoact2.models.hf import HFCheckpointPolicy

    return _call_with(HFCheckpointPolicy, path, opts, "a local checkpoint")


def _load_nano(**opts: Any) -> Policy:
    # Nano (issue 6) plugs in here once it ships: molmoact2/models/nano.py exposing `load_nano(**opts)`.
    import importlib

    try:
        nano = importlib.import_module("molmoact2.models.nano")
    except ModuleNotFoundError as exc:
        if exc.name != "molmoact2.models.nano":
            raise
        nano = None
    loader = getattr(nano, "load_nano", None) if nano is not None else None
    if loader is None:
        raise NotImplementedError(
            "the Nano model is not shipped yet (issue 6). Use instead: a local MolmoAct2 checkpoint directory "
            "(load_policy('/path/to/MolmoAct2-SO100_101', trust_remote_code=True)) or an /act server URL "
            "(load_policy('http://HOST:PORT'))."
        )
    return loader(**opts)
