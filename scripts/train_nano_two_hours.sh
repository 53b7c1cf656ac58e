#!/bin/bash
# Nano from random weights in one sitting on 2 CPU cores: the lineage of assets/nano (README, ~8.4 h as run)
# compressed into four runs in the real family's order (an ER backbone first, then acting, then the action expert
# re-fit on plain demos). Measured in docs/nano_experiments.md#two-hours; it is NOT the shipped Nano's recipe.
#
#   scripts/train_nano_two_hours.sh [WORK_DIR]      # default /tmp/nano2h; caches there are re-used if present
#
# Ends with WORK_DIR/xo, a checkpoint directory `molmoact2 eval nano --checkpoint` and `nano:WORK_DIR/xo` take.
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-/tmp/nano2h}
B=.venv/bin/molmoact2
export MUJOCO_GL=${MUJOCO_GL:-egl}
mkdir -p "$W"
t0=$(date +%s)
stamp() { echo "== $1 at $(date -u +%H:%M:%S), $(( $(date +%s) - t0 )) s since the start"; }

# Data (two processes at once; skipped when the cache is already there). Seeds below 10000: held-out ones start there.
cache() { [ -f "$1/meta.json" ] || "${@:2}"; }
# `wait PID` (not a bare `wait`) so a failed cache stops the script here, with its own error above.
cache "$W/data" $B train data --out "$W/data" --episodes-per-task 40 & p1=$!
cache "$W/contrast" $B train data --out "$W/contrast" --episodes-per-task 60 --first-seed 100 \
    --qa-frames-per-episode 6 --targets-per-layout 3 & p2=$!
wait $p1; wait $p2
cache "$W/scenes_a" $B train scenes --out "$W/scenes_a" --scenes 1200 --first-seed 1000 & p1=$!
cache "$W/scenes_b" $B train scenes --out "$W/scenes_b" --scenes 1200 --first-seed 2200 & p2=$!
wait $p1; wait $p2
stamp data

# 0. Random weights, written once so `train vision` has a checkpoint to start from (one optimizer step).
rm -rf "$W/init"
$B train nano --data "$W/data" --out "$W/init" --size small --steps 1 --batch-size 16 --lr 1e-3 --seed 90 --threads 2
# 1. The image tokens learn what is where (segmentation targets through a throwaway linear head).
rm -rf "$W/vision"
$B train vision --init-from "$W/init" --data "$W/scenes_a" "$W/scenes_b" --out "$W/vision" --epochs 20 --threads 2
stamp vision
# 2. ER phase: questions only, the image path frozen, head 3.0 told where the named object is.
$B train nano --data "$W/data" "$W/scenes_a" "$W/scenes_b" "$W/contrast" --out "$W/er" --size small \
    --init-from "$W/vision" --mix action=0,depth=0.1,depth_action=0,qa=0.9 --qa-kinds point,count,closer,point_absent \
    --steps 1200 --warmup-steps 50 --lr 5e-4 --batch-size 16 --seed 91 --threads 2 --freeze-vision \
    --ground-weight 1.0 --save-every 300
stamp er
# 3. Act phase: the whole model on mixed styles, the head kept on the named object in answers and first frames.
$B train nano --data "$W/data" "$W/contrast" "$W/scenes_a" "$W/scenes_b" --out "$W/act" --size small \
    --init-from "$W/er" --mix action=0.35,depth=0.15,depth_action=0.3,qa=0.2 --qa-kinds point,count,closer,point_absent \
    --steps 800 --warmup-steps 50 --lr 5e-4 --batch-size 16 --seed 92 --threads 2 --ground-weight 1.0 \
    --save-every 200 --ground-actions --ground-actions-first 8
stamp act
# 4. The action expert alone on plain demos (the ViT and language model stay step 3's).
$B train nano --data "$W/data" "$W/contrast" --out "$W/xo" --init-from "$W/act" --steps 900 --seed 93 --size small \
    --mix action=0.5,depth=0,depth_action=0.5,qa=0 --warmup-steps 30 --lr 3e-4 --batch-size 16 --threads 2 \
    --save-every 300 --expert-only
stamp expert
