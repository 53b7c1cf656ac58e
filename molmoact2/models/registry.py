"""One way to pick a model, shared by the CLI, the app and the notebooks.

    load_policy("nano")                          # the workbench's own small model (issue 6), assets/nano
    load_policy("nano-er")                       # its spatial-question specialist, assets/nano_er
    load_policy("nano-fast", compiled=True)      # Nano with a 2-step flow expert, assets/nano_fast: >= 50 Hz
    load_policy("nano:/tmp/nano_random")         # a Nano checkpoint directory of your choice
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

# `nano` means this directory; the env var points it elsewhere (tests, or a Nano trained outside the repo).
NANO_DIR_ENV = "MOLMOACT2_NANO_DIR"
REPO_NANO_DIR = Path(__file__).resolve().parents[2] / "assets" / "nano"
NANO_BUILD_HINT = "python -m molmoact2.models.nano.factory --out /tmp/nano_random"
# `nano-er`: Nano taught to answer spatial questions (Molmo2-ER's role in the real family); not for control.
NANO_ER_SPEC = "nano-er"
REPO_NANO_ER_DIR = REPO_NANO_DIR.parent / "nano_er"
# `nano-fast`: Nano whose flow expert was distilled to take 2 Euler steps instead of 5 (`train distill-expert`):
# the continuous call for real-time control, about 2 points less success (README, Benchmarks).
NANO_FAST_SPEC = "nano-fast"
REPO_NANO_FAST_DIR = REPO_NANO_DIR.parent / "nano_fast"

SPEC_HELP = (
    "a model spec is one of: 'nano' (the workbench's own small model), 'nano-er' (its spatial-question "
    "specialist), 'nano-fast' (Nano with a 2-step flow expert, for real-time control), 'nano:DIR' (a Nano "
    "checkpoint directory), a local MolmoAct2 checkpoint directory "
    "(e.g. /data/MolmoAct2-DROID, downloaded beforehand with `hf download allenai/MolmoAct2-DROID --local-dir "
    "/data/MolmoAct2-DROID`), or the URL of an /act server (e.g. http://127.0.0.1:8000)"
)


def spec_kind(spec: str | os.PathLike) -> str:
    """'nano', 'remote' or 'checkpoint' (the directory may still be incomplete; `load_policy` checks)."""
    s = str(spec).strip()
    if s.lower() in ("nano", NANO_ER_SPEC, NANO_FAST_SPEC) or s.lower().startswith("nano:"):
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
        return _load_nano(s, **opts)
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


def nano_default_dir() -> Path:
    """Where `nano` is read from: $MOLMOACT2_NANO_DIR if set, else the repository's assets/nano/."""
    env = os.environ.get(NANO_DIR_ENV, "").strip()
    return Path(env).expanduser() if env else REPO_NANO_DIR


def resolve_nano_dir(path: str | os.PathLike | None = None) -> Path:
    """The Nano checkpoint directory for `nano` (path None) or `nano:PATH`, checked WITHOUT importing torch,
    so `molmoact2 serve --policy nano` fails in a fraction of a second when there is nothing to load."""
    alternatives = (
        f"To try the code path, build a RANDOM tiny Nano (meaningless actions): `{NANO_BUILD_HINT}` and use "
        f"'nano:/tmp/nano_random' (CLI: --policy nano:/tmp/nano_random). For real control use a local MolmoAct2 "
        f"checkpoint directory (load_policy('/path/to/MolmoAct2-SO100_101', trust_remote_code=True)) or an /act "
        f"server URL (load_policy('http://HOST:PORT'))."
    )
    if path is not None and str(path).strip():
        directory = Path(path).expanduser()
        if not (directory / "config.json").is_file():
            what = "does not exist" if not directory.exists() else "has no config.json"
            raise FileNotFoundError(f"'nano:{path}': {directory} {what}; expected a Nano checkpoint directory. "
                                    f"{alternatives}")
        return directory
    directory = nano_default_dir()
    if (directory / "config.json").is_file():
        return directory
    if os.environ.get(NANO_DIR_ENV, "").strip():
        raise FileNotFoundError(f"{NANO_DIR_ENV}={directory} holds no Nano checkpoint (no config.json there). "
                                f"{alternatives}")
    raise NotImplementedError(f"the default Nano checkpoint is not shipped yet (issue 6; expected at {directory}). "
                              f"{alternatives}")


def refuse_for_actions(spec: str) -> None:
    """Raise ValueError when `spec` names a model that answers questions but must not act (`nano-er`): it would run,
    badly. Called where actions are asked for (the Control tab, `molmoact2 serve`)."""
    if str(spec).strip().lower() == NANO_ER_SPEC:
        raise ValueError(f"'{NANO_ER_SPEC}' is the spatial-question specialist: its action path was not trained "
                         f"after its question lessons. Use 'nano' for control (or 'nano:{REPO_NANO_ER_DIR}' to run it "
                         "anyway)")


def nano_spec_dir(spec: str) -> Path:
    """The checkpoint directory of a Nano spec ('nano', 'nano-er', 'nano-fast', 'nano:DIR'), checked without
    importing torch."""
    s = str(spec).strip()
    if s.lower() == NANO_FAST_SPEC:
        if (REPO_NANO_FAST_DIR / "config.json").is_file():
            return REPO_NANO_FAST_DIR
        raise FileNotFoundError(f"'{NANO_FAST_SPEC}': no checkpoint at {REPO_NANO_FAST_DIR} (no config.json); use "
                                f"'nano' (the same model with 5 Euler steps) or 'nano:DIR' with a Nano checkpoint "
                                f"directory")
    if s.lower() == NANO_ER_SPEC:
        if (REPO_NANO_ER_DIR / "config.json").is_file():
            return REPO_NANO_ER_DIR
        raise FileNotFoundError(f"'{NANO_ER_SPEC}': no checkpoint at {REPO_NANO_ER_DIR} (no config.json); use 'nano' "
                                f"(it answers questions too, less well) or 'nano:DIR' with a Nano checkpoint directory")
    if s.lower() == "nano" or s.lower().startswith("nano:"):
        return resolve_nano_dir(s[len("nano:"):].strip() if s.lower().startswith("nano:") else None)
    raise ValueError(f"{s!r} is not a Nano spec; expected 'nano', '{NANO_ER_SPEC}', '{NANO_FAST_SPEC}' or 'nano:DIR'")


def _load_nano(spec: str, /, **opts: Any) -> Policy:
    if "path" in opts:  # load_policy("nano", path=DIR) is the same as load_policy("nano:DIR")
        if spec.strip().lower() != "nano":
            raise TypeError(f"load_policy: give the Nano directory once: 'nano:DIR', or 'nano' with path=DIR "
                            f"(got {spec!r} and path=)")
        spec = f"nano:{opts.pop('path')}"
    directory = nano_spec_dir(spec)
    from molmoact2.models.nano import load_nano  # imports torch + transformers: only once there is a checkpoint

    return _call_with(load_nano, directory, opts, "a Nano checkpoint")
