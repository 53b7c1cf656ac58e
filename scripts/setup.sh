#!/usr/bin/env bash
# Idempotent set-up: Debian packages when missing, a venv in .venv, pinned deps.
# A second run with nothing changed finishes in a few seconds (dpkg check + stamp compare).
set -euo pipefail
cd "$(dirname "$0")/.."

# libusb: open3d links libusb-1.0.so.0 and fails to import without it.
# g++: Nano's compiled inference (torch.compile writes C++ kernels and builds them; molmoact2/models/nano/compiled.py).
APT_PACKAGES=(chromium libosmesa6 libegl1 libegl-mesa0 libgl1-mesa-dri libvulkan1 mesa-vulkan-drivers libusb-1.0-0 g++)
PY=${PYTHON:-python3.11}
VENV=.venv
CONSTRAINTS=requirements/constraints.txt
STAMP=$VENV/.setup-stamp

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[setup] installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV with $PY"
  "$PY" -m venv "$VENV"
fi

# Reinstall only when the dependency description changed.
want=$(cat pyproject.toml "$CONSTRAINTS" | sha256sum | cut -d' ' -f1)
have=$(cat "$STAMP" 2>/dev/null || true)
if [ "$want" != "$have" ]; then
  echo "[setup] installing Python dependencies (first run: a few minutes)"
  PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c "$CONSTRAINTS")
  # torch first and alone: with 2.13.0 installed, nothing later can pull CUDA wheels.
  # (the grep hides pip's warnings about index folders named in this machine's pip config)
  "${PIP[@]}" torch==2.13.0 2> >(grep -v "^WARNING: Location" >&2)
  "${PIP[@]}" -e ".[dev]" 2> >(grep -v "^WARNING: Location" >&2)
  # open3d-cpu pulls dash, whose JupyterLab extension makes JupyterLab ask for a rebuild.
  find "$VENV/share/jupyter/lab/extensions" -name 'dash-jupyterlab*.tgz' -delete 2>/dev/null || true
  echo "$want" > "$STAMP"
fi
echo "[setup] ready: $VENV"
