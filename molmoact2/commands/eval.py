"""`molmoact2 eval ...`: measure a trained Nano on held-out simulator seeds; print the README tables.

    molmoact2 train data --out /tmp/nano_heldout --episodes-per-task 13 --first-seed 10000
    molmoact2 eval nano --checkpoint assets/nano --heldout /tmp/nano_heldout --seeds-per-task 50 \\
        --out docs/results/nano_eval.json
    molmoact2 eval report docs/results/nano_eval.json
    molmoact2 eval compare OLD.json NEW.json     # is NEW clearly better on the same seeds (or questions)?
    molmoact2 eval luck S0.json S1.json S2.json   # one checkpoint, several --noise-seed draws: skill or luck?
    molmoact2 eval compare-draws --old A0.json A1.json A2.json --new B0.json B1.json B2.json   # better beyond luck?
    molmoact2 eval qa --data /tmp/nano_data /tmp/nano_heldout   # spatial answers: training vs held-out scenes
    molmoact2 eval words --checkpoint assets/nano   # do the object's words steer the plan? (`expert`: control)
    molmoact2 eval words --directions               # ... and the direction word of a push (left vs right)?
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from molmoact2.training.nano_data import SINGLE_ARM_TASKS

    p = subparsers.add_parser("eval", help="evaluate Nano on held-out seeds (closed loop, spatial, depth, actions)")
    sub = p.add_subparsers(dest="eval_command", metavar="EVAL_COMMAND")
    n = sub.add_parser("nano", help="closed-loop success + open-loop metrics; writes a JSON record, prints tables")
    n.add_argument("--checkpoint", default="assets/nano", help="Nano checkpoint directory (default: the shipped one)")
    n.add_argument("--heldout", default=None,
                   help="held-out data cache (molmoact2 train data --first-seed 10000 ...) for pointing, counting, "
                        "depth-code accuracy and action error; without it only the closed loop runs")
    n.add_argument("--seeds-per-task", type=int, default=50, help="closed-loop episodes per task and mode")
    n.add_argument("--first-seed", type=int, default=None,
                   help="first seed (default 10000, held-out; with --training-layouts 0)")
    n.add_argument("--training-layouts", action="store_true",
                   help="a fitting check, not a quality figure: the closed loop on the layouts the training data "
                        "used (seeds from 0) and --heldout naming the training cache; the record and report say so")
    n.add_argument("--tasks", default=",".join(SINGLE_ARM_TASKS))
    n.add_argument("--modes", default="continuous,think", help="closed-loop modes: continuous, think, discrete")
    n.add_argument("--on-limit", choices=("clip", "refuse"), default="clip",
                   help="safety guard for joint targets past the limits: clip (counted in the record) or refuse")
    n.add_argument("--max-questions", type=int, default=None, help="grade at most this many spatial questions")
    n.add_argument("--swap-targets", action="store_true",
                   help="run each layout again with the instruction naming another of its objects "
                        "(words vs layout: does the arm follow the words?)")
    n.add_argument("--action-tokenizer", default=None, help="OpenFAST directory (default assets/openfast_so101_sim)")
    n.add_argument("--n-action-steps", type=int, default=None, metavar="N",
                   help="actions executed per policy query (default: the checkpoint's norm stats; recorded)")
    n.add_argument("--num-steps", type=int, default=None, metavar="N",
                   help="Euler steps of the flow expert (default: the checkpoint's flow_matching_num_steps; recorded)")
    n.add_argument("--carry-steps", type=int, default=0, metavar="K",
                   help="pin each chunk's first K actions to the previous plan's (continuous and Think; 0 = off): "
                        "consecutive chunks continue one another instead of each drawing its own mode")
    n.add_argument("--noise-scale", type=float, default=1.0, metavar="S",
                   help="multiply the flow expert's start noise by S (continuous and Think; 1 = as trained, "
                        "0 = its mean: deterministic plans, the noise seed then changes nothing)")
    n.add_argument("--plan-samples", type=int, default=1, metavar="K",
                   help="start draws per flow call, the medoid plan kept (continuous and Think; 1 = one draw, as "
                        "the real model; the expert's batch grows K-fold)")
    n.add_argument("--temporal-ensemble", type=int, default=0, metavar="K",
                   help="continuous and Think: ask every K ticks and execute each tick's weighted mean over every "
                        "whole plan covering it (ACT's temporal ensembling; 0 = off)")
    n.add_argument("--ensemble-decay", type=float, default=0.01, metavar="M",
                   help="with --temporal-ensemble: plan weight exp(-M x ticks it started after the oldest plan)")
    n.add_argument("--replan-before-close", action="store_true",
                   help="continuous and Think: cut each chunk at the plan's first open -> shut edge of the gripper "
                        "(5 or more ticks out) and ask again there, so the grasp is decided at the object")
    n.add_argument("--constrain-action-tokens", action="store_true",
                   help="decode the discrete mode's OpenFAST ids under their length grammar (closed and open loop): "
                        "every chunk decodes; default unconstrained, as the real model")
    n.add_argument("--compiled", action="store_true",
                   help="run vision, prefill and the flow expert through torch.compile (needs g++): the same numbers "
                        "up to float rounding, faster calls after each worker compiles its shapes (recorded)")
    n.add_argument("--noise-seed", type=int, default=0,
                   help="seed of the policies' flow noise and sampling (another one: how much of a result is luck)")
    n.add_argument("--jobs", type=int, default=2, help="worker processes (one torch thread each)")
    n.add_argument("--out", default=None, help="write the full JSON record here")
    n.set_defaults(handler=run_nano)
    r = sub.add_parser("report", help="print the markdown tables of a saved JSON record")
    r.add_argument("record")
    r.set_defaults(handler=run_report)
    c = sub.add_parser("compare", help="two records side by side: differences with 95%% intervals, paired episodes "
                                       "(two `eval qa` records: paired question by question)")
    c.add_argument("old")
    c.add_argument("new")
    c.add_argument("--names", default="old,new", help="column names for the two records, e.g. 'step 1100,step 2800'")
    c.add_argument("--one-pass-old", action="store_true",
                   help="`eval qa --shift-copies` records: grade OLD by its one-pass answers (e.g. the same record "
                        "twice: one pass against the copies, clustered by layout)")
    c.add_argument("--one-pass-new", action="store_true", help="the same for NEW")
    c.set_defaults(handler=run_compare)
    cd = sub.add_parser("compare-draws", help="two checkpoints, several --noise-seed records each: differences "
                                              "paired by layout, with the draws' luck inside the interval")
    cd.add_argument("--old", nargs="+", required=True, metavar="RECORD", help="records of the old checkpoint")
    cd.add_argument("--new", nargs="+", required=True, metavar="RECORD", help="records of the new checkpoint")
    cd.add_argument("--names", default="old,new", help="column names for the two checkpoints, e.g. 'E,H'")
    cd.add_argument("--setting-change", action="store_true",
                    help="accept sides that differ in weights AND inference settings, when the setting belongs to the "
                         "new weights (an expert distilled to take fewer Euler steps); the output names the setting")
    cd.set_defaults(handler=run_compare_draws)
    lk = sub.add_parser("luck", help="several records of one checkpoint with different --noise-seed: the spread "
                                     "between draws and how often a solved layout is solved again")
    lk.add_argument("records", nargs="+")
    lk.set_defaults(handler=run_luck)
    q = sub.add_parser("qa", help="grade spatial answers on training and held-out scenes side by side "
                                  "(memorised vs never learned)")
    q.add_argument("--checkpoint", default="assets/nano", help="Nano checkpoint directory (default: the shipped one)")
    q.add_argument("--data", nargs="+", required=True, help="data caches from `molmoact2 train data` (any seeds)")
    q.add_argument("--max-questions", type=int, default=240, help="random sample per cache (fixed seed)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    q.add_argument("--kinds", default="", help="grade only these kinds, comma-separated (point, closer, "
                                               "point_absent, count; default all)")
    q.add_argument("--head", default="", metavar="LAYER.HEAD",
                   help="also measure where this attention head looks while the model writes its points, e.g. 3.0 "
                        "(the head `train nano --ground-weight` teaches; layer and head 0-based)")
    q.add_argument("--shift-copies", action="store_true",
                   help="average each one-point answer over shifted copies of the image (molmoact2.point_ensemble, "
                        "the default ShiftEnsemble: 5 copies, 1/32 of the side); the one-pass answers are graded too")
    q.add_argument("--out", default="", help="write every answer and the summaries as JSON here")
    q.set_defaults(handler=run_qa)
    w = sub.add_parser("words", help="same scene and noise, only the object's name swapped: does the plan move "
                                     "toward the named object? does the model point at it?")
    w.add_argument("--checkpoint", default="assets/nano",
                   help="Nano checkpoint directory, or 'expert' for the scripted expert (the positive control)")
    w.add_argument("--tasks", default=None,
                   help="tasks whose layouts have several candidate objects (default touch,pick_place)")
    w.add_argument("--directions", action="store_true",
                   help="swap the direction word instead (push_left vs push_right on one layout and object; "
                        "reference: the scripted expert's plan for each word)")
    w.add_argument("--seeds-per-task", type=int, default=20,
                   help="layouts probed per task (with --directions: layouts in all)")
    w.add_argument("--first-seed", type=int, default=10000)
    w.add_argument("--advance-chunks", type=int, default=2,
                   help="second probe point: after this many chunks of the own instruction's plans")
    w.add_argument("--no-ask", action="store_true", help="skip the pointing questions")
    w.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    w.add_argument("--out", default=None, help="write the rows and summary as JSON here")
    w.set_defaults(handler=run_words)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def _split(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def run_nano(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from molmoact2.evaluation.nano_eval import EvalConfig, evaluate
    from molmoact2.evaluation.report import to_markdown

    cfg = EvalConfig(checkpoint=args.checkpoint, heldout=args.heldout, action_tokenizer=args.action_tokenizer,
                     tasks=_split(args.tasks), modes=_split(args.modes), seeds_per_task=args.seeds_per_task,
                     first_seed=_first_seed(args), max_questions=args.max_questions, jobs=args.jobs,
                     on_limit=args.on_limit, swap_targets=args.swap_targets, n_action_steps=args.n_action_steps,
                     num_steps=args.num_steps, seed=args.noise_seed, carry_steps=args.carry_steps,
                     noise_scale=args.noise_scale, plan_samples=args.plan_samples,
                     temporal_ensemble=args.temporal_ensemble, ensemble_decay=args.ensemble_decay,
                     replan_before_close=args.replan_before_close,
                     training_layouts=args.training_layouts, constrain_action_tokens=args.constrain_action_tokens,
                     compiled=args.compiled)
    record = evaluate(cfg)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".partial")
        tmp.write_text(json.dumps(record, separators=(",", ":")))
        tmp.rename(out)
    print(to_markdown(record))
    print(f"\n{record['wall_minutes']} min" + (f"; record: {args.out}" if args.out else ""))
    return 0


def _first_seed(args: argparse.Namespace) -> int:
    from molmoact2.evaluation.nano_eval import HELD_OUT_FIRST_SEED

    if args.first_seed is not None:
        return args.first_seed
    return 0 if args.training_layouts else HELD_OUT_FIRST_SEED


def _load_record(path_text: str, command: str) -> dict:
    import json
    from pathlib import Path

    path = Path(path_text)
    if not path.is_file():
        raise SystemExit(f"eval {command}: {path} not found (write one with `molmoact2 eval nano --out {path}`)")
    from molmoact2.evaluation.report import EVAL_FORMAT

    record = json.loads(path.read_text())
    if record.get("format") != EVAL_FORMAT:
        raise SystemExit(f"eval {command}: {path} is not a {EVAL_FORMAT} record "
                         f"(format={record.get('format')!r})")
    return record


def _qa_record(path_text: str) -> dict | None:
    """The record at `path_text` if it is an `eval qa` record, else None (the caller decides what else it may be)."""
    import json
    from pathlib import Path

    from molmoact2.evaluation.qa_compare import QA_FORMAT

    path = Path(path_text)
    if not (path.is_file() and path.suffix == ".json"):
        return None
    try:
        record = json.loads(path.read_text())
    except ValueError:
        return None
    return record if isinstance(record, dict) and record.get("format") == QA_FORMAT else None


def run_report(args: argparse.Namespace) -> int:
    from molmoact2.evaluation.report import to_markdown

    record = _qa_record(args.record)
    if record is not None:  # an `eval qa` record
        from molmoact2.evaluation.qa_check import to_markdown as qa_markdown

        print(qa_markdown(record["results"]))
        return 0
    print(to_markdown(_load_record(args.record, "report")))
    return 0


def _two_names(text: str, command: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if len(names) != 2 or not all(names):
        raise SystemExit(f"eval {command}: --names wants two comma-separated names, got {text!r}")
    return names


def run_compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from molmoact2.evaluation.compare import compare, to_markdown

    names = _two_names(args.names, "compare")
    qa_old, qa_new = _qa_record(args.old), _qa_record(args.new)
    if qa_old is not None or qa_new is not None:  # `eval qa` records: paired question by question
        from molmoact2.evaluation import qa_compare

        if qa_old is None or qa_new is None:
            raise SystemExit("eval compare: one record is an `eval qa` record and the other is not; compare two "
                             "`eval qa --out` records of the same --data, or two `eval nano` records")
        fields = {f"{side}_field": "single_pass_correct" if getattr(args, f"one_pass_{side}") else "correct"
                  for side in ("old", "new")}
        try:
            print(qa_compare.to_markdown(qa_compare.compare_qa(qa_old, qa_new, **fields), old_name=names[0],
                                         new_name=names[1]))
        except ValueError as exc:
            raise SystemExit(f"eval compare: {exc}") from None
        return 0
    if args.one_pass_old or args.one_pass_new:
        for path in (args.old, args.new):
            if not Path(path).is_file():
                raise SystemExit(f"eval compare: {path} not found")
        raise SystemExit("eval compare: --one-pass-old / --one-pass-new are for `eval qa --shift-copies` records")
    old, new = _load_record(args.old, "compare"), _load_record(args.new, "compare")
    try:
        result = compare(old, new)
    except ValueError as exc:
        raise SystemExit(f"eval compare: {exc}") from None
    print(to_markdown(result, old_name=names[0], new_name=names[1]))
    return 0


def run_compare_draws(args: argparse.Namespace) -> int:
    from molmoact2.evaluation.compare_draws import compare_draws, to_markdown

    names = _two_names(args.names, "compare-draws")
    old = [_load_record(path, "compare-draws") for path in args.old]
    new = [_load_record(path, "compare-draws") for path in args.new]
    try:
        result = compare_draws(old, new, setting_change=args.setting_change)
    except ValueError as exc:
        raise SystemExit(f"eval compare-draws: {exc}") from None
    print(to_markdown(result, old_name=names[0], new_name=names[1]))
    return 0


def run_luck(args: argparse.Namespace) -> int:
    from molmoact2.evaluation.luck import luck, to_markdown

    records = [_load_record(path, "luck") for path in args.records]
    try:
        result = luck(records)
    except ValueError as exc:
        raise SystemExit(f"eval luck: {exc}") from None
    print(to_markdown(result))
    return 0


def run_qa(args: argparse.Namespace) -> int:
    from pathlib import Path

    for d in args.data:
        if not (Path(d) / "qa.json").is_file():
            raise SystemExit(f"eval qa: {d} is not a data cache with qa.json (build one with `molmoact2 train data`)")
    head = None
    if args.head:
        layer, _, index = args.head.partition(".")
        if not (layer.isdigit() and index.isdigit()):
            raise SystemExit(f"eval qa: --head expects LAYER.HEAD (0-based integers, e.g. 3.0), got {args.head!r}")
        head = (int(layer), int(index))
    import torch

    from molmoact2.evaluation.qa_check import GRADED_KINDS, grade, to_markdown
    from molmoact2.models.nano.policy import load_nano

    torch.set_num_threads(args.threads)
    policy = load_nano(args.checkpoint, seed=args.seed)
    kinds = tuple(_split(args.kinds)) if args.kinds else GRADED_KINDS
    ensemble = None
    if args.shift_copies:
        from molmoact2.point_ensemble import ShiftEnsemble

        ensemble = ShiftEnsemble()
    try:
        results = [grade(policy, d, max_questions=args.max_questions, seed=args.seed, kinds=kinds, head=head,
                         ensemble=ensemble) for d in args.data]
    except ValueError as exc:
        raise SystemExit(f"eval qa: {exc}") from None
    print(to_markdown(results))
    if args.out:
        import json

        from dataclasses import asdict

        Path(args.out).write_text(json.dumps({"format": "molmoact2_qa_check.v1", "checkpoint": str(args.checkpoint),
                                              "kinds": list(kinds), "results": results,
                                              "shift_ensemble": None if ensemble is None else asdict(ensemble)},
                                             indent=1))
        print(f"wrote {args.out}")
    return 0


def run_words(args: argparse.Namespace) -> int:
    import json
    import time
    from pathlib import Path

    if args.directions:
        if args.tasks is not None:
            raise SystemExit("eval words: --directions probes push_left against push_right; drop --tasks")
        from molmoact2.evaluation import direction_probe as words

        tasks = words.DIRECTION_TASKS
    else:
        from molmoact2.evaluation import words_probe as words

        tasks = _split(args.tasks or "touch,pick_place")
    if args.seeds_per_task < 2:
        raise SystemExit(f"eval words: --seeds-per-task must be >= 2 (an interval needs two), got {args.seeds_per_task}")
    if args.checkpoint == "expert":
        from molmoact2.runner import ExpertPolicy

        def make_policy(env):  # one per world: the expert reads ITS world's target
            return ExpertPolicy(env, chunk_size=15)
    else:
        if not (Path(args.checkpoint) / "config.json").is_file():
            raise SystemExit(f"eval words: --checkpoint {args.checkpoint} is not a checkpoint directory (no "
                             "config.json); pass a Nano checkpoint or 'expert'")
        import torch

        from molmoact2.models.nano.policy import load_nano

        torch.set_num_threads(args.threads)
        policy = load_nano(args.checkpoint, seed=0)

        def make_policy(env):  # the same model for both worlds: only the instruction differs
            return policy
    t0 = time.perf_counter()
    if args.directions:
        rows = words.probe(make_policy, layouts=args.seeds_per_task, first_seed=args.first_seed,
                           advance_chunks=args.advance_chunks)
    else:
        rows = words.probe(make_policy, tasks=tasks, seeds_per_task=args.seeds_per_task, first_seed=args.first_seed,
                           advance_chunks=args.advance_chunks, ask=not args.no_ask)
    summary = words.summarize(rows)
    minutes = round((time.perf_counter() - t0) / 60, 1)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        record = {"format": "molmoact2_words_probe.v1", "checkpoint": args.checkpoint, "tasks": list(tasks),
                  "swapped": "direction" if args.directions else "name",
                  "seeds_per_task": args.seeds_per_task, "first_seed": args.first_seed,
                  "advance_chunks": args.advance_chunks, "wall_minutes": minutes, "summary": summary, "rows": rows}
        out.write_text(json.dumps(record, indent=1))
    print(words.to_markdown(summary, args.checkpoint))
    print(f"\n{minutes} min" + (f"; record: {args.out}" if args.out else ""))
    return 0
