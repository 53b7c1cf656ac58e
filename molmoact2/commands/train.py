"""`molmoact2 train ...`: build Nano's cached simulator dataset, and train Nano on it (resumable).

    molmoact2 train data --out /tmp/nano_data --episodes-per-task 40
    molmoact2 train scenes --out /tmp/nano_scenes --scenes 2400     # questions only, many more layouts
    molmoact2 train nano --data /tmp/nano_data --out /tmp/nano_small --size small --steps 2000 \\
        --batch-size 16 --lr 1e-3 --seed 0           # add --resume to continue an interrupted run
    molmoact2 train vision --init-from /tmp/nano_small --data /tmp/nano_scenes --heldout /tmp/nano_heldout \
        --out /tmp/nano_vision            # image tokens learn what is where (segmentation), then `train nano`
    molmoact2 train distill-expert --teacher assets/nano --data /tmp/nano_data /tmp/nano_contrast \
        --out /tmp/nano_2step --student-steps 2   # the flow expert reaches its own plans in fewer Euler steps
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    from molmoact2.training.nano_data import SINGLE_ARM_TASKS

    p = subparsers.add_parser("train", help="train MolmoAct2-Nano on simulator data (data cache, training run)")
    sub = p.add_subparsers(dest="train_command", metavar="TRAIN_COMMAND")

    d = sub.add_parser("data", help="record expert demos + depth codes + spatial QA into a cached dataset")
    d.add_argument("--out", required=True, help="dataset directory (must not exist or be empty)")
    d.add_argument("--episodes-per-task", type=int, default=25, help="successful expert episodes per task")
    d.add_argument("--tasks", default=",".join(SINGLE_ARM_TASKS), help="comma-separated single-arm task names")
    d.add_argument("--first-seed", type=int, default=0)
    d.add_argument("--render-size", type=int, default=224, help="simulator render size (what the app uses)")
    d.add_argument("--store-size", type=int, default=96, help="stored frame size (the model's input size)")
    d.add_argument("--think-stride", type=int, default=15, help="frames between policy queries (n_action_steps)")
    d.add_argument("--qa-frames-per-episode", type=int, default=3)
    d.add_argument("--targets-per-layout", type=int, default=1,
                   help="demos per layout, each naming a different object (contrastive: only the words differ)")
    d.add_argument("--direction-pairs", action="store_true",
                   help="with two opposite tasks (--tasks push_left,push_right): record them in pairs on one layout "
                        "and object, so only the words say which way (--episodes-per-task counts pairs)")
    d.add_argument("--wrong-way-ticks", default="", metavar="MIN-MAX",
                   help="with --direction-pairs: each demo starts after the opposite word's expert drove MIN-MAX "
                        "ticks (drawn per seed and word), so only the word can turn the arm back")
    d.add_argument("--takeover-policy", default="", metavar="SPEC",
                   help="a policy ('nano', 'nano:DIR') drives each layout first and the expert finishes from the "
                        "state it leaves (DAgger-style data: only the expert's part is recorded)")
    d.add_argument("--takeover-chunks", default="1-6", metavar="MIN-MAX",
                   help="policy chunks before the expert takes over, drawn per layout (seed-fixed)")
    d.add_argument("--takeover-near-cm", type=float, default=0.0, metavar="CM",
                   help="hand over at the first chunk boundary (from MIN chunks on) where the jaw is within CM "
                        "of the named object's centre (3-D), else after MAX chunks (0 = off: a drawn chunk count)")
    d.add_argument("--takeover-lifted-cm", type=float, default=0.0, metavar="CM",
                   help="hand over at the first chunk boundary (from MIN chunks on) where the policy holds the named "
                        "object at least CM above where it rested, else after MAX chunks; the pick expert then "
                        "starts from the lift (0 = off; pair it with a short --takeover-chunk-ticks)")
    d.add_argument("--takeover-missed", action="store_true",
                   help="hand over at the first chunk boundary (from MIN chunks on) where the jaw has closed on "
                        "nothing (a missed grasp): the expert re-opens and grasps again; roll-ins that never miss "
                        "are not recorded (pick_place; raise --max-attempts-factor)")
    d.add_argument("--max-attempts-factor", type=int, default=3, metavar="N",
                   help="give up on a task after episodes x N seeds without enough successful demos (raise it for "
                        "takeovers that rarely qualify, e.g. --takeover-lifted-cm: about 1 layout in 11)")
    d.add_argument("--takeover-think", action="store_true", help="the roll-in policy runs in Think mode")
    d.add_argument("--takeover-chunk-ticks", type=int, default=None, metavar="N",
                   help="ticks the roll-in policy executes per chunk (default: its own n_action_steps; the shipped "
                        "Nano's is 30 since 2026-12-05, the DAgger rounds 1-5 drove 15)")
    d.add_argument("--overwrite", action="store_true")
    d.set_defaults(handler=run_data)

    sc = sub.add_parser("scenes", help="spatial questions from many scene layouts (no demos): more scenes for pointing")
    sc.add_argument("--out", required=True, help="cache directory (must not exist or be empty)")
    sc.add_argument("--scenes", type=int, default=1000, help="scene layouts, one front image each")
    sc.add_argument("--first-seed", type=int, default=1000, help="first layout seed (all must stay below 10000)")
    sc.add_argument("--max-expert-ticks", type=int, default=240,
                    help="the scripted expert runs 0..N ticks before the render, so the arm is at a working pose")
    sc.add_argument("--overwrite", action="store_true")
    sc.set_defaults(handler=run_scenes)

    n = sub.add_parser("nano", help="train Nano (resumable; writes the real checkpoint layout in fp16)")
    n.add_argument("--data", required=True, nargs="+", metavar="DIR",
                   help="data caches: demos from `molmoact2 train data` (the first one's norm stats are used), "
                        "optionally question scenes from `molmoact2 train scenes`")
    n.add_argument("--out", required=True, help="checkpoint directory (train_state/ inside holds the resume state)")
    n.add_argument("--steps", type=int, default=2000, help="total optimizer steps (including resumed ones)")
    n.add_argument("--size", choices=("tiny", "small"), default="small")
    n.add_argument("--batch-size", type=int, default=16)
    n.add_argument("--lr", type=float, default=1e-3)
    n.add_argument("--warmup-steps", type=int, default=100)
    n.add_argument("--seed", type=int, default=0)
    n.add_argument("--save-every", type=int, default=100, help="steps between checkpoints")
    n.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    n.add_argument("--mix", default="", help="style weights, e.g. action=0.35,depth=0.15,depth_action=0.3,qa=0.2")
    n.add_argument("--noise-samples", type=int, default=4, help="flow-matching noise draws per LM pass")
    n.add_argument("--action-tokenizer", default=None, help="OpenFAST tokenizer dir (default assets/openfast_so101_sim)")
    n.add_argument("--resume", action="store_true", help="continue from OUT/train_state (same options, more --steps)")
    n.add_argument("--init-from", default="", metavar="DIR",
                   help="start a NEW run from this trained checkpoint's weights (its train_state/ fp32 weights when "
                        "present): fresh optimizer and schedule, any --mix; recorded in training_args.json. Its norm "
                        "stats must normalize as the data's; its n_action_steps (an inference setting) is kept")
    n.add_argument("--qa-kinds", default="", help="train only on these question kinds, comma-separated "
                                                  "(point, point_absent, box, count, closer; default all)")
    n.add_argument("--pooling", default="", metavar="RxC",
                   help="ViT patches pooled into each language-model image token, e.g. 1x1 (default: the size's "
                        "2x2, or the --init-from checkpoint's own)")
    n.add_argument("--freeze-vision", action="store_true",
                   help="keep the ViT and image adapter as they are (e.g. after `train vision`); the rest learns")
    n.add_argument("--expert-only", action="store_true",
                   help="train only the action expert; the ViT, adapter and language model stay as loaded "
                        "(--init-from), e.g. to teach the expert to read a language model that already points at "
                        "the named object. Needs a --mix of action / depth_action only")
    n.add_argument("--ordinal-state", action="store_true",
                   help="start the 256 state-bin token rows as ordinal embeddings (neighbouring bins similar) "
                        "instead of the random or --init-from rows; a new run only")
    n.add_argument("--state-noise", type=float, default=0.0, metavar="F",
                   help="Gaussian noise on every robot example's state before binning, as a fraction of each "
                        "joint's 1-99%% range (0 = off): a blurred state cannot stand in for the pictures")
    n.add_argument("--front-dropout", type=float, default=0.0, metavar="P",
                   help="blank a plain action example's front image (mid-grey) with probability P (0 = off): "
                        "the wrist camera then has to carry the reach")
    n.add_argument("--arrival-share", type=float, default=0.0, metavar="P",
                   help="draw this share of robot examples from arrival chunks, the ones that bring the jaw within "
                        "--arrival-cm of the named object (0 = off: frames uniform)")
    n.add_argument("--arrival-cm", type=float, default=2.0, metavar="CM",
                   help="how near the jaw's midpoint comes to the object's centre in an arrival chunk")
    n.add_argument("--shift-augment", type=float, default=0.0, metavar="F",
                   help="move each question's picture by whole pixels up to F of its side in x and y (0 = off), "
                        "the answer's points and grounding mask with it; e.g. 0.08, half a 6x6 token cell")
    n.add_argument("--ground-weight", type=float, default=0.0, metavar="W",
                   help="grounding loss weight (0 = off): while a pointing answer's coordinates are written, one "
                        "attention head is trained to look at the image tokens covering the named object")
    n.add_argument("--ground-layer", type=int, default=3, help="language-model layer of that head (0-based)")
    n.add_argument("--ground-head", type=int, default=0, help="which head of that layer (0-based)")
    n.add_argument("--ground-actions", action="store_true",
                   help="also in action examples: at the state tokens and the prompt's last token, the same head is "
                        "trained to look at the instruction's object in the front image (needs --ground-weight and "
                        "demo caches built with the per-frame target masks)")
    n.add_argument("--ground-actions-first", type=int, default=0, metavar="N",
                   help="with --ground-actions or --expert-ground-weight: ground only each demo's first N frames, "
                        "before the arm's pose gives its object away, and draw half of the action examples from "
                        "them (0 = every frame)")
    n.add_argument("--reach-weight", type=float, default=0.0, metavar="W",
                   help="reach loss weight (0 = off): in action examples, two channels of one layer's value at the "
                        "prompt's last position (what the action expert reads) are told where the instruction's "
                        "object is in the front image (needs demo caches with the per-frame target masks)")
    n.add_argument("--reach-layer", type=int, default=-1,
                   help="language-model layer of those channels (0-based; negative counts from the last)")
    n.add_argument("--expert-ground-weight", type=float, default=0.0, metavar="W",
                   help="expert grounding loss weight (0 = off): in action examples, one head of the action expert's "
                        "cross-attention is trained to look at the instruction's object in the front image (needs "
                        "demo caches with the per-frame target masks)")
    n.add_argument("--expert-ground-block", type=int, default=3, help="action-expert block of that head (0-based)")
    n.add_argument("--expert-ground-head", type=int, default=1, help="which head of that block (0-based)")
    n.add_argument("--offset-weight", type=float, default=0.0, metavar="W",
                   help="expert offset loss weight (0 = off): three channels of the action expert's last block, at "
                        "each step of the chunk, are told the object-minus-jaw vector there (needs demo caches "
                        "with target_offset_m; trains only the expert, so it works with --expert-only)")
    n.set_defaults(handler=run_nano)

    v = sub.add_parser("vision", help="teach the image tokens what is where (a readout head on the scenes' "
                                      "segmentation); writes a checkpoint for `train nano --init-from`")
    v.add_argument("--init-from", required=True, metavar="DIR", help="Nano checkpoint or training directory")
    v.add_argument("--data", required=True, nargs="+", metavar="DIR",
                   help="caches with point/box questions and segmentation (`train scenes`, `train data`)")
    v.add_argument("--heldout", nargs="*", default=[], metavar="DIR",
                   help="caches graded at the end (held-out seeds), as the training caches are")
    v.add_argument("--out", required=True, help="new checkpoint directory (must not exist or be empty)")
    v.add_argument("--epochs", type=int, default=6, help="passes over the distinct images (~30 s each at 2 threads "
                                                         "for 2400 images)")
    v.add_argument("--batch-size", type=int, default=32)
    v.add_argument("--lr", type=float, default=1e-3)
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    v.add_argument("--frozen", action="store_true",
                   help="train only the readout head: a probe of what the image tokens already hold")
    v.add_argument("--per-class-positions", action="store_true",
                   help="a position per class per cell (default: one per cell, of the object covering most of it)")
    v.set_defaults(handler=run_vision)

    x = sub.add_parser("distill-expert", help="teach the flow expert to reach its own plans in fewer Euler steps "
                                              "(only the expert trains; writes a whole checkpoint)")
    x.add_argument("--teacher", default="assets/nano", metavar="DIR", help="Nano checkpoint to distil")
    x.add_argument("--data", required=True, nargs="+", metavar="DIR",
                   help="demo caches (`train data`) whose frames give the contexts; the teacher's own")
    x.add_argument("--out", required=True, help="new checkpoint directory (must not exist or be empty)")
    x.add_argument("--student-steps", type=int, default=2, help="Euler steps the distilled expert takes")
    x.add_argument("--teacher-steps", type=int, default=5, help="Euler steps of the teacher's plans (the target)")
    x.add_argument("--steps", type=int, default=600)
    x.add_argument("--batch-size", type=int, default=32)
    x.add_argument("--lr", type=float, default=3e-4)
    x.add_argument("--warmup-steps", type=int, default=30)
    x.add_argument("--depth-share", type=float, default=0.3,
                   help="share of contexts with depth codes (Think mode); the rest plain robot prompts")
    x.add_argument("--seed", type=int, default=0)
    x.add_argument("--save-every", type=int, default=100)
    x.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    x.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    x.set_defaults(handler=run_distill)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def run_data(args: argparse.Namespace) -> int:
    from molmoact2.training.nano_data import DataConfig, build_dataset
    from molmoact2.training.takeover import TakeoverConfig, parse_range

    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    takeover = None
    if not args.takeover_policy:
        alone = [f for f, v in (("--takeover-near-cm", args.takeover_near_cm),
                                ("--takeover-lifted-cm", args.takeover_lifted_cm),
                                ("--takeover-missed", args.takeover_missed),
                                ("--takeover-chunk-ticks", args.takeover_chunk_ticks)) if v]
        if alone:  # hand-over settings without a roll-in policy would be ignored: say so instead
            raise ValueError(f"{', '.join(alone)}: set a roll-in policy with --takeover-policy (e.g. 'nano') too")
    if args.takeover_policy:
        if not 0.0 <= args.takeover_near_cm < 100.0:
            raise ValueError(f"--takeover-near-cm: expected a distance in centimetres in [0, 100), got "
                             f"{args.takeover_near_cm}")
        if not 0.0 <= args.takeover_lifted_cm < 50.0:
            raise ValueError(f"--takeover-lifted-cm: expected a height in centimetres in [0, 50), got "
                             f"{args.takeover_lifted_cm}")
        lo, hi = TakeoverConfig.parse_chunks(args.takeover_chunks)
        takeover = TakeoverConfig(policy=args.takeover_policy, min_chunks=lo, max_chunks=hi,
                                  depth_reasoning=args.takeover_think, near_m=args.takeover_near_cm / 100,
                                  lifted_m=args.takeover_lifted_cm / 100, missed=args.takeover_missed,
                                  n_action_steps=args.takeover_chunk_ticks)
    wrong_way = None
    if args.wrong_way_ticks:
        wrong_way = parse_range(args.wrong_way_ticks, "--wrong-way-ticks", "ticks of the opposite word's expert")
    if args.max_attempts_factor < 1:
        raise ValueError(f"--max-attempts-factor: expected at least 1 (seeds per wanted episode), got "
                         f"{args.max_attempts_factor}")
    cfg = DataConfig(tasks=tasks, episodes_per_task=args.episodes_per_task, first_seed=args.first_seed,
                     render_size=args.render_size, store_size=args.store_size, think_stride=args.think_stride,
                     qa_frames_per_episode=args.qa_frames_per_episode, targets_per_layout=args.targets_per_layout,
                     takeover=takeover, direction_pairs=args.direction_pairs,
                     wrong_way_ticks=wrong_way, max_attempts_factor=args.max_attempts_factor)
    path = build_dataset(cfg, args.out, overwrite=args.overwrite)
    import json

    meta = json.loads((path / "meta.json").read_text())
    print(f"wrote {path}: {len(meta['episodes'])} episodes, {meta['frames']} frames, {meta['qa_items']} QA items "
          f"in {meta['build_seconds']} s; failed expert seeds: {meta['failed_seeds']}")
    if cfg.targets_per_layout > 1:
        eps = meta["episodes"]
        layouts = len({(e["task"], e["seed"]) for e in eps})
        aimed = {t: sum(e["retargeted"] for e in eps if e["task"] == t) for t in cfg.tasks}
        print(f"layouts: {layouts}; re-aimed demos (another object named) per task: {aimed}")
    if cfg.direction_pairs:
        print(f"pairs: {len(meta['episodes']) // 2} on one layout and object each; {meta['unpaired_seeds']} seeds "
              f"passed over (no object both tasks fit on their shared layout)")
    if cfg.wrong_way_ticks is not None and meta["episodes"]:
        import numpy as np

        ticks = [e["takeover"]["policy_ticks"] for e in meta["episodes"]]
        gap_cm = np.median([100 * e["takeover"]["jaw_to_target_m"] for e in meta["episodes"]])
        print(f"wrong-way starts: the opposite word's expert drove a median {np.median(ticks):.0f} ticks "
              f"({min(ticks)}-{max(ticks)}); the jaw then a median {gap_cm:.1f} cm from the object")
    if takeover is not None:
        eps = meta["episodes"]
        wrong = sum(not e["takeover"]["near_target"] for e in eps)
        print(f"takeover: the policy's parts ended {meta['takeover_endings']}; at the takeover the jaw was nearest "
              f"another object than the named one in {wrong}/{len(eps)} recorded episodes")
        if eps:
            import numpy as np

            gap_cm = np.median([100 * e["takeover"]["jaw_to_target_m"] for e in eps])
            chunks = np.median([e["takeover"]["policy_chunks"] for e in eps])
            held = sum(bool(e["takeover"].get("held")) for e in eps)
            print(f"takeover: median jaw-to-object distance at the hand-over {gap_cm:.1f} cm, after a median "
                  f"{chunks:g} policy chunks; the named object in the jaw at {held}/{len(eps)} hand-overs")
    return 0


def run_scenes(args: argparse.Namespace) -> int:
    from molmoact2.training.nano_scenes import SceneQAConfig, build_scene_qa

    cfg = SceneQAConfig(scenes=args.scenes, first_seed=args.first_seed, max_expert_ticks=args.max_expert_ticks)
    path = build_scene_qa(cfg, args.out, overwrite=args.overwrite)
    import json

    meta = json.loads((path / "meta.json").read_text())
    print(f"wrote {path}: {len(meta['scenes'])} scenes, {meta['qa_items']} QA items in {meta['build_seconds']} s")
    return 0


def _parse_pooling(text: str) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        rows, cols = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--pooling: expected ROWSxCOLS such as 1x1 or 2x2, got {text!r}") from None
    return rows, cols


def run_nano(args: argparse.Namespace) -> int:
    from molmoact2.training.nano_examples import StyleMix
    from molmoact2.training.nano_trainer import DEFAULT_ACTION_TOKENIZER, TrainConfig, train

    cfg = TrainConfig(size=args.size, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                      warmup_steps=args.warmup_steps, seed=args.seed, save_every=args.save_every,
                      threads=args.threads, num_noise_samples=args.noise_samples,
                      mix=StyleMix.parse(args.mix) if args.mix else StyleMix(),
                      action_tokenizer=str(args.action_tokenizer or DEFAULT_ACTION_TOKENIZER),
                      init_from=str(args.init_from),
                      qa_kinds=tuple(k.strip() for k in args.qa_kinds.split(",") if k.strip()),
                      pooling=_parse_pooling(args.pooling), freeze_vision=args.freeze_vision,
                      expert_only=args.expert_only,
                      ordinal_state=args.ordinal_state, state_noise=args.state_noise,
                      front_dropout=args.front_dropout, shift_augment=args.shift_augment,
                      arrival_share=args.arrival_share, arrival_cm=args.arrival_cm,
                      ground_weight=args.ground_weight, ground_layer=args.ground_layer, ground_head=args.ground_head,
                      ground_actions=args.ground_actions, ground_actions_first=args.ground_actions_first,
                      reach_weight=args.reach_weight, reach_layer=args.reach_layer,
                      expert_ground_weight=args.expert_ground_weight, expert_ground_block=args.expert_ground_block,
                      expert_ground_head=args.expert_ground_head, offset_weight=args.offset_weight)
    data = args.data[0] if len(args.data) == 1 else args.data  # one cache keeps training_args' "data" a string
    summary = train(data, args.out, cfg, resume=args.resume,
                    argv=getattr(args, "command_line", ["molmoact2", *sys.argv[1:]]))
    final = summary["final"]
    print(f"trained to step {final.get('step')} ({summary['steps_run']} steps this run, "
          f"{summary['seconds_per_step']:.2f} s/step); loss {final.get('loss', float('nan')):.4f}; "
          f"checkpoint {args.out} (model.safetensors {summary['model_mib']:.1f} MiB fp16)")
    return 0


def run_vision(args: argparse.Namespace) -> int:
    from molmoact2.training.nano_vision import VisionPretrainConfig, pretrain_vision

    cfg = VisionPretrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                               threads=args.threads, frozen=args.frozen,
                               per_class_positions=args.per_class_positions)
    record = pretrain_vision(args.init_from, args.data, args.heldout, args.out, cfg,
                             argv=getattr(args, "command_line", ["molmoact2", *sys.argv[1:]]))
    last = record["history"][-1]
    print(f"vision {'probe' if cfg.frozen else 'pretraining'}: {last['epoch']} epochs in {record['seconds']} s; "
          f"loss {last['loss']:.4f} (classes {last['ce']:.4f}, position {last['position']:.5f})")
    for split, grade in record["grades"].items():
        rows = ", ".join(f"{k} {v['hits']}/{v['n']} ({100 * v['rate']:.0f}%)" for k, v in grade.items())
        print(f"  pointing from the image tokens, {split}: {rows}")
    print(f"checkpoint {args.out} (model.safetensors {record['model_mib']:.1f} MiB fp16); "
          f"next: molmoact2 train nano --init-from {args.out} ...")
    return 0


def run_distill(args: argparse.Namespace) -> int:
    from molmoact2.training.expert_distill import DistillConfig, distill

    cfg = DistillConfig(teacher=str(args.teacher), teacher_steps=args.teacher_steps, student_steps=args.student_steps,
                        steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup_steps,
                        depth_share=args.depth_share, seed=args.seed, save_every=args.save_every, threads=args.threads)
    summary = distill(args.data, args.out, cfg, resume=args.resume,
                      argv=getattr(args, "command_line", ["molmoact2", *sys.argv[1:]]))
    print(f"distilled to step {summary['final']['step']} ({summary['steps_run']} steps this run, "
          f"{summary['seconds_per_step']:.2f} s/step); end-point MSE {summary['first']['distill_loss']:.4f} at its "
          f"first step -> {summary['final']['distill_loss']:.4f}; checkpoint {args.out} "
          f"({cfg.student_steps} Euler steps)")
    return 0
