"""`molmoact2 sim ...`: evaluate the scripted experts, record expert demos in the LeRobot v3.0 layout."""

from __future__ import annotations

import argparse
import sys
import time


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sim", help="MuJoCo SO-101 worlds: expert evaluation, demo recording")
    sub = p.add_subparsers(dest="sim_command", metavar="SIM_COMMAND")

    e = sub.add_parser("eval-experts", help="success rate of the scripted experts over N seeds per task")
    _eval_args(e)
    e.set_defaults(handler=run_eval)

    r = sub.add_parser("record", help="record expert episodes as a LeRobot v3.0 dataset (PNG frames)")
    r.add_argument("--task", required=True, help="task name (see `molmoact2 sim tasks`)")
    r.add_argument("--episodes", type=int, default=10)
    r.add_argument("--out", required=True, help="output dataset directory (must not exist or be empty)")
    r.add_argument("--seed", type=int, default=0, help="first seed; episode i uses seed + i")
    r.add_argument("--image-size", type=int, default=224)
    r.add_argument("--keep-failures", action="store_true", help="also keep episodes the expert failed")
    r.set_defaults(handler=run_record)

    t = sub.add_parser("tasks", help="list the task names")
    t.set_defaults(handler=run_tasks)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def _eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seeds", type=int, default=100, help="seeds per task (0..N-1 from --first-seed)")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--tasks", nargs="*", default=None, help="default: every single-arm and bimanual task")


def run_tasks(args: argparse.Namespace) -> int:
    from molmoact2.sim import task_names

    print("\n".join(task_names()))
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from molmoact2.sim import make_env, task_names
    from molmoact2.sim.rollout import run_episode

    tasks = args.tasks or task_names()
    rows = []
    for task in tasks:
        env = make_env(task, image_size=32, cameras=_first_camera(task), depth=False, segmentation=False)
        ok, steps, failed = 0, 0, []
        t0 = time.perf_counter()
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        for seed in tqdm(seeds, desc=task, unit="ep", file=sys.stderr):
            res = run_episode(env, seed)
            ok += res.success
            steps += res.steps
            if not res.success:
                failed.append(seed)
        env.close()
        rows.append((task, ok, len(seeds), steps / max(1, len(seeds)), time.perf_counter() - t0, failed))
    print(f"{'task':<16}{'success':>12}{'rate':>8}{'mean steps':>12}{'time s':>9}  failed seeds")
    for task, ok, n, mean_steps, secs, failed in rows:
        print(f"{task:<16}{ok:>7}/{n:<4}{ok / n:>8.0%}{mean_steps:>12.1f}{secs:>9.1f}  {failed[:20]}")
    return 0


def _first_camera(task: str) -> tuple[str, ...]:
    return ("front",)


def main_eval_experts(argv: list[str] | None = None) -> int:
    import molmoact2  # noqa: F401

    parser = argparse.ArgumentParser(description="scripted expert success rate per task")
    _eval_args(parser)
    return run_eval(parser.parse_args(argv))


def run_record(args: argparse.Namespace) -> int:
    from molmoact2.data.record import record_expert_dataset

    path = record_expert_dataset(
        args.task, args.out, episodes=args.episodes, first_seed=args.seed, image_size=args.image_size,
        keep_failures=args.keep_failures,
    )
    print(f"wrote {path}")
    return 0
