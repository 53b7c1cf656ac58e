"""`load_policy` specs for Nano: `nano` (the default directory) and `nano:DIR`; fail-fast CLI refusal.

Every test points the default at a directory it controls (MOLMOACT2_NANO_DIR), so the results do not
depend on whether assets/nano/ has been shipped yet.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from molmoact2.models import registry
from molmoact2.models.registry import NANO_DIR_ENV, load_policy, nano_default_dir, resolve_nano_dir, spec_kind

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def nano_dir(tmp_path_factory):
    pytest.importorskip("torch")
    from molmoact2.models.nano.factory import make_random_checkpoint

    return make_random_checkpoint(tmp_path_factory.mktemp("reg") / "nano_random", seed=5)


def test_spec_kinds():
    assert spec_kind("nano") == spec_kind("NANO") == spec_kind("nano:/tmp/x") == spec_kind("nano-er") == "nano"
    assert spec_kind("nano-fast") == spec_kind("NANO-FAST") == "nano"
    assert spec_kind("http://h:8000") == spec_kind("HTTPS://h") == "remote"
    assert spec_kind("/data/MolmoAct2-DROID") == spec_kind("./nano") == "checkpoint"


def test_default_dir_follows_env(tmp_path, monkeypatch):
    monkeypatch.delenv(NANO_DIR_ENV, raising=False)
    assert nano_default_dir() == registry.REPO_NANO_DIR == ROOT / "assets" / "nano"
    monkeypatch.setenv(NANO_DIR_ENV, str(tmp_path / "n"))
    assert nano_default_dir() == tmp_path / "n"


def test_missing_nano_messages(tmp_path, monkeypatch):
    monkeypatch.setenv(NANO_DIR_ENV, str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError) as err:
        load_policy("nano")
    msg = str(err.value)
    assert f"{NANO_DIR_ENV}={tmp_path / 'empty'}" in msg and "molmoact2.models.nano.factory" in msg
    assert "http://" in msg and "trust_remote_code=True" in msg
    with pytest.raises(FileNotFoundError, match="does not exist; expected a Nano checkpoint directory"):
        load_policy(f"nano:{tmp_path / 'nope'}")
    (tmp_path / "not_nano").mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_policy(f"nano:{tmp_path / 'not_nano'}")
    # The repository default, without the env var: either shipped (a directory with config.json) or a
    # NotImplementedError that says so -- never anything else.
    monkeypatch.delenv(NANO_DIR_ENV)
    if (registry.REPO_NANO_DIR / "config.json").is_file():
        assert resolve_nano_dir() == registry.REPO_NANO_DIR
    else:
        with pytest.raises(NotImplementedError, match="not shipped yet"):
            resolve_nano_dir()


def test_nano_er_spec(nano_dir, tmp_path, monkeypatch):
    # 'nano-er' names its own repository directory: missing, it says so and names the alternatives ...
    monkeypatch.setattr(registry, "REPO_NANO_ER_DIR", tmp_path / "no_er")
    with pytest.raises(FileNotFoundError, match="'nano-er': no checkpoint at .*no_er.*use 'nano'"):
        load_policy("nano-er")
    # ... present, it loads from there, whatever $MOLMOACT2_NANO_DIR says (that is `nano`'s directory)
    monkeypatch.setattr(registry, "REPO_NANO_ER_DIR", nano_dir)
    monkeypatch.setenv(NANO_DIR_ENV, str(tmp_path / "elsewhere"))
    assert registry.nano_spec_dir("NANO-ER") == nano_dir
    assert load_policy("nano-er", seed=0).checkpoint_dir == str(nano_dir)
    with pytest.raises(TypeError, match="once"):
        load_policy("nano-er", path=str(nano_dir))
    with pytest.raises(ValueError, match="not a Nano spec"):
        registry.nano_spec_dir("/data/x")


def test_nano_fast_spec(nano_dir, tmp_path, monkeypatch):
    # 'nano-fast' names its own repository directory too: missing, it says so; present, it loads from there and
    # takes the policy's options (here the compiled stages: attached, not yet compiled until the first call)
    monkeypatch.setattr(registry, "REPO_NANO_FAST_DIR", tmp_path / "no_fast")
    with pytest.raises(FileNotFoundError, match="'nano-fast': no checkpoint at .*no_fast.*use 'nano'"):
        load_policy("nano-fast")
    monkeypatch.setattr(registry, "REPO_NANO_FAST_DIR", nano_dir)
    assert registry.nano_spec_dir("Nano-Fast") == nano_dir
    policy = load_policy("nano-fast", seed=0, compiled=True)
    assert policy.checkpoint_dir == str(nano_dir) and policy.compiled and policy.name.endswith(", compiled]")
    assert policy.model.__dict__["compiled_stages"] is not None


def test_nano_specs_load(nano_dir, monkeypatch):
    monkeypatch.setenv(NANO_DIR_ENV, str(nano_dir))
    default = load_policy("nano", seed=0)  # the default directory, here pointed at our random checkpoint
    by_spec = load_policy(f"nano:{nano_dir}", seed=0)
    by_path = load_policy("nano", path=str(nano_dir), seed=0)
    for pol in (default, by_spec, by_path):
        assert type(pol).__name__ == "NanoPolicy" and pol.checkpoint_dir == str(nano_dir)
    with pytest.raises(TypeError, match="once"):
        load_policy(f"nano:{nano_dir}", path=str(nano_dir))
    # Serving Nano (6-D state, 2 cameras) needs a matching schema; the server refuses to start otherwise.
    from molmoact2.models.act_protocol import SCHEMAS
    from molmoact2.serve.app import build_app

    build_app(default, SCHEMAS["so101"])
    with pytest.raises(ValueError, match="6-D state but schema 'droid' sends 8-D"):
        build_app(default, SCHEMAS["droid"])
    with pytest.raises(ValueError, match="schema 'yam'"):
        build_app(default, SCHEMAS["yam"])


def test_cli_serve_nano_fails_fast_without_torch(tmp_path):
    """`molmoact2 serve --policy nano` with no checkpoint: exit 2 with the message, torch never imported."""
    script = ("import sys\nfrom molmoact2.cli import main\nrc = main(['serve', '--policy', 'nano', '--schema', "
              "'so101'])\nprint('RC', rc, 'TORCH', 'torch' in sys.modules, 'TF', 'transformers' in sys.modules)\n")
    env = {"PATH": "/usr/bin:/bin", NANO_DIR_ENV: str(tmp_path / "empty")}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    elapsed = time.perf_counter() - t0
    assert "RC 2 TORCH False TF False" in r.stdout, r.stdout + r.stderr
    assert "holds no Nano checkpoint" in r.stderr and "nano:/tmp/nano_random" in r.stderr
    assert elapsed < 10, f"refusal took {elapsed:.1f} s"
