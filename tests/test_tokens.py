"""Tests for molmoact2.tokens: vocabulary, prompt text, task normalization, state bins, output grammar.

Expected prompt strings are written out by hand from the reference text (§3) and the official
`_build_robot_text`, not produced by calling the code under test.
"""

import numpy as np
import pytest

from molmoact2 import tokens as T

# --------------------------------------------------------------------------------------------
# vocabulary
# --------------------------------------------------------------------------------------------


def test_special_tokens_order_and_content():
    toks = T.special_tokens()
    assert len(toks) == 3 + 12 + 2048 + 256 + 128 + 9
    assert len(set(toks)) == len(toks)
    assert toks[:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert toks[3:6] == ["<action_output>", "<action_start>", "<action_end>"]
    first_action = toks.index("<action_0>")
    assert toks[first_action + 2047] == "<action_2047>"
    assert toks[first_action + 2048] == "<state_0>"
    assert toks[first_action + 2048 + 256] == "<depth_0>"
    assert toks[-9] == "<|image|>"
    assert T.special_tokens() == toks  # stable between calls
    assert "<|image|>" not in T.special_tokens(include_image=False)
    assert "<|im_end|>" not in T.special_tokens(include_chat=False)


@pytest.mark.parametrize(
    "fn,k,text",
    [(T.action_token, 2047, "<action_2047>"), (T.state_token, 0, "<state_0>"), (T.depth_token, 127, "<depth_127>")],
)
def test_indexed_token_helpers(fn, k, text):
    assert fn(k) == text


@pytest.mark.parametrize("fn,k", [(T.action_token, 2048), (T.state_token, 256), (T.depth_token, 128), (T.depth_token, -1)])
def test_indexed_token_helpers_reject_out_of_range(fn, k):
    with pytest.raises(ValueError, match="expected an integer k in 0.."):
        fn(k)


# --------------------------------------------------------------------------------------------
# task normalization
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("  Pick   up\tthe cup.  ", "pick up the cup"),
        ("Task: Open the drawer!", "open the drawer"),
        ("instruction - stack the blocks", "stack the blocks"),
        ("language_instruction: wipe the table", "wipe the table"),
        ("The task is to fold the towel.", "fold the towel"),
        ("Your task is to push the button", "push the button"),
        ("GOAL: The Task Is To open the door...", "open the door"),
        ('"Put the mug on the shelf."', "put the mug on the shelf"),
        ("\u201cPlace the cup\u201d.", "place the cup"),
        ("(wipe the table)", "wipe the table"),
        ("Pick up the cup. Then place it on the plate!", "pick up the cup; then place it on the plate"),
        ("Say 'hi' to Bob", "say 'hi' to bob"),  # inner quotes stay
        ("Put 0.5 cups of rice in", "put 0; 5 cups of rice in"),  # faithful: any '.' splits sentences
        ("...open the door", "...open the door"),  # faithful: leading punctuation is kept (one sentence)
        ("   ", ""),
        ("", ""),
    ],
)
def test_normalize_task(raw, expected):
    assert T.normalize_task(raw) == expected


def test_normalize_task_needs_str():
    with pytest.raises(TypeError, match="expected str"):
        T.normalize_task(None)


# --------------------------------------------------------------------------------------------
# state bins
# --------------------------------------------------------------------------------------------

MM = {"min": [-1.0, -1.0, -1.0], "max": [1.0, 1.0, 1.0]}


def test_state_bins_endpoints_and_middle():
    assert T.discretize_state([-1.0, 1.0, 0.0], MM, "min_max").tolist() == [0, 255, 128]


def test_state_bins_nan_and_inf():
    # NaN -> normalized 0 -> 127.5 -> 128 (half to even); +inf -> +1 -> 255; -inf -> -1 -> 0.
    bins = T.discretize_state([np.nan, np.inf, -np.inf], MM, "min_max")
    assert bins.tolist() == [128, 255, 0]
    assert T.discretize_state([np.inf, -np.inf, np.nan], {"mean": [0] * 3, "std": [1] * 3}, "mean_std").tolist() == [
        255, 0, 128,
    ]
    assert T.state_bins(np.array([np.nan, np.inf, -np.inf], np.float32)).tolist() == [128, 255, 0]


def test_state_bins_clip():
    assert T.discretize_state([5.0, -7.0, 0.5], MM, "min_max").tolist() == [255, 0, 191]
    # mean_std is unbounded; the bin step clips
    stats = {"mean": [0.0], "std": [0.1]}
    assert T.normalize_state([1.0], stats, "mean_std")[0] == pytest.approx(10.0)
    assert T.discretize_state([1.0], stats, "mean_std").tolist() == [255]


def test_state_bins_round_half_to_even():
    # (s + 1) / 2 * 255 lands exactly on .5 for these float32 values; np.rint rounds to even.
    s = np.array([np.float32(-1 + 2 * 126.5 / 255), np.float32(0.0), np.float32(-1 + 2 * 254.5 / 255)], np.float32)
    scaled = (s + np.float32(1)) / np.float32(2) * np.float32(255)
    assert scaled.tolist() == [126.5, 127.5, 254.5]  # the premise of this test
    assert T.state_bins(s).tolist() == [126, 128, 254]


def test_state_degenerate_range_is_zero():
    stats = {"min": [0.0, 2.0], "max": [10.0, 2.0]}
    for raw in ([5.0, 2.0], [5.0, 100.0], [5.0, np.nan], [5.0, np.inf]):
        normed = T.normalize_state(raw, stats, "min_max")
        assert normed[1] == 0.0
        assert T.discretize_state(raw, stats, "min_max").tolist() == [128, 128]


def test_state_mask_passes_raw_value_through():
    stats = {"min": [0.0, 0.0], "max": [10.0, 10.0], "mask": [True, False]}
    normed = T.normalize_state([5.0, 0.5], stats, "min_max")
    assert normed.tolist() == [0.0, 0.5]
    assert T.discretize_state([5.0, 0.5], stats, "min_max").tolist() == [128, 191]


def test_state_quantile_modes_use_their_keys():
    stats = {"min": [-100.0], "max": [100.0], "q01": [0.0], "q99": [2.0], "q10": [0.5], "q90": [1.5]}
    assert T.normalize_state([1.5], stats, "q01_q99").tolist() == [0.5]
    assert T.normalize_state([1.5], stats, "q10_q90").tolist() == [1.0]
    assert T.normalize_state([9.0], stats, "q01_q99").tolist() == [1.0]  # bounded: clipped


def test_state_none_mode_and_batch_shape():
    x = np.array([[0.25, -3.0], [1.0, 0.0]], np.float32)
    assert np.array_equal(T.normalize_state(x, None, "none"), x)
    bins = T.discretize_state(x, None, "none")
    assert bins.shape == (2, 2) and bins.dtype == np.int64
    assert bins.tolist() == [[159, 0], [255, 128]]


def test_state_errors_name_the_problem():
    with pytest.raises(ValueError, match="needs state stats 'max'"):
        T.discretize_state([0.0], {"min": [0.0]}, "min_max")
    with pytest.raises(ValueError, match="has 2 values but the state has 3 dims"):
        T.discretize_state([0.0, 0.0, 0.0], {"min": [0, 0], "max": [1, 1]}, "min_max")
    with pytest.raises(ValueError, match="norm_mode: expected one of"):
        T.discretize_state([0.0], MM, "minmax")


# --------------------------------------------------------------------------------------------
# prompt
# --------------------------------------------------------------------------------------------

LIBERO_SETUP = "single franka robotic arm in libero"
LIBERO_CONTROL = "delta end-effector pose"


def test_prompt_single_image_action():
    text = T.build_robot_prompt("Put the bowl on the plate.", np.array([0, 128, 255]), LIBERO_SETUP, LIBERO_CONTROL, 1)
    expected = (
        "<|image|><|im_start|>user\n"
        "The task is to put the bowl on the plate. "
        "The setup is <setup_start>single franka robotic arm in libero<setup_end>. "
        "The current state of the robot is <state_start><state_0><state_128><state_255><state_end>. "
        "The expected control mode is <control_start>delta end-effector pose<control_end>. "
        "Given these, what action should the robot take to complete the task?<|im_end|>\n"
        "<|im_start|>assistant\n<action_output>"
    )
    assert text == expected


def test_prompt_three_images_depth_action():
    text = T.build_robot_prompt(
        "Task: Fold the towel!", [7], "bimanual yam robotic arms in molmoact2", "absolute joint pose", 3,
        "robot_depth_action",
    )
    expected = (
        "Image 1<|image|>Image 2<|image|>Image 3<|image|><|im_start|>user\n"
        "The task is to fold the towel. "
        "The setup is <setup_start>bimanual yam robotic arms in molmoact2<setup_end>. "
        "The current state of the robot is <state_start><state_7><state_end>. "
        "The expected control mode is <control_start>absolute joint pose<control_end>. "
        "Given these, first predict the depth map of the main image and then predict the action the robot "
        "should take to complete the task?<|im_end|>\n"
        "<|im_start|>assistant\n<depth_output><action_output>"
    )
    assert text == expected


def test_prompt_depth_only_trigger():
    parts = T.robot_prompt_parts("push", [1], "s", "c", 1, "robot_depth")
    assert parts.trigger == "<depth_output>"
    assert parts.text.endswith("<|im_start|>assistant\n<depth_output>")
    assert "first predict the depth map of the main image" in parts.user_text


def test_prompt_variants_without_markers_state_or_images():
    text = T.build_robot_prompt(
        "open the drawer", None, LIBERO_SETUP, LIBERO_CONTROL, 0, add_setup_tokens=False, add_control_tokens=False
    )
    expected = (
        "<|im_start|>user\n"
        "The task is to open the drawer. The setup is single franka robotic arm in libero. "
        "The expected control mode is delta end-effector pose. "
        "Given these, what action should the robot take to complete the task?<|im_end|>\n"
        "<|im_start|>assistant\n<action_output>"
    )
    assert text == expected


def test_prompt_does_not_double_wrap_and_can_skip_normalization():
    parts = T.robot_prompt_parts(
        "Pick The Cup.", None, "<setup_start>x<setup_end>", "<control_start>y<control_end>", 1,
        normalize_language=False,
    )
    assert parts.task == "Pick The Cup."
    assert "The task is to Pick The Cup.. The setup is <setup_start>x<setup_end>." in parts.user_text
    assert "The expected control mode is <control_start>y<control_end>." in parts.user_text
    chat = "<|im_start|>user\n" + parts.user_text + "<|im_end|>\n<|im_start|>assistant\n"
    assert parts.text == parts.image_prefix + chat + parts.trigger


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(output_style="robot_trace"), "output_style: expected one of"),
        (dict(task="  ...  "), "task: expected a non-empty instruction"),
        (dict(num_images=-1), "num_images: expected an integer >= 0"),
        (dict(state_bins=np.zeros((2, 3), int)), "state_bins: expected a non-empty 1-D array"),
        (dict(state_bins=[256]), r"<state_k>: expected an integer k in 0..255"),
    ],
)
def test_prompt_errors(kwargs, match):
    args = dict(task="pick", state_bins=[1], setup="s", control="c", num_images=1, output_style="robot_action")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        T.build_robot_prompt(**args)


# --------------------------------------------------------------------------------------------
# generated-output parsing
# --------------------------------------------------------------------------------------------

RNG = np.random.default_rng(3)
DEPTH = RNG.integers(0, 128, 100)
ACTION = RNG.integers(0, 2048, 37)


def _depth_text(codes):
    return "<depth_start>" + "".join(f"<depth_{int(k)}>" for k in codes) + "<depth_end>"


def _action_text(ids):
    return "<action_start>" + "".join(f"<action_{int(k)}>" for k in ids) + "<action_end>"


def test_parse_depth_action_text():
    out = T.parse_generated(_depth_text(DEPTH) + _action_text(ACTION) + "<|im_end|>")
    assert out.style == "robot_depth_action"
    assert out.depth_bins.dtype == np.int64 and np.array_equal(out.depth_bins, DEPTH)
    assert np.array_equal(out.action_ids, ACTION)
    assert out.eos == "<|im_end|>"
    assert out.depth_grid.shape == (10, 10) and out.depth_grid[2, 3] == DEPTH[23]


def test_parse_action_only_and_depth_only():
    a = T.parse_generated(_action_text(ACTION) + "<|endoftext|>")
    assert a.style == "robot_action" and a.depth_bins is None and a.eos == "<|endoftext|>"
    d = T.parse_generated(_depth_text(DEPTH))
    assert d.style == "robot_depth" and d.action_ids is None and d.eos is None


def test_parse_accepts_whitespace_between_tokens():
    text = T.format_generated(DEPTH, ACTION, eos="<|im_end|>", sep=" ")
    assert " <depth_3>" in text or " <depth_" in text
    out = T.parse_generated("\n  " + text.replace(" <action_start>", "\n<action_start>") + "\n")
    assert np.array_equal(out.depth_bins, DEPTH) and np.array_equal(out.action_ids, ACTION)


def test_format_then_parse_round_trip():
    for depth, action in [(DEPTH, ACTION), (None, ACTION), (DEPTH, None), (DEPTH.reshape(10, 10), ACTION[:1])]:
        out = T.parse_generated(T.format_generated(depth, action))
        if depth is not None:
            assert np.array_equal(out.depth_bins, np.asarray(depth).reshape(-1))
        if action is not None:
            assert np.array_equal(out.action_ids, action)


def _vocab(base=151643):
    return {tok: base + i for i, tok in enumerate(T.special_tokens())}


def test_token_ids_from_vocab_and_config_and_id_round_trip():
    vocab = _vocab()
    ids = T.TokenIds.from_vocab(vocab)
    assert ids.depth_token_start_id == vocab["<depth_0>"]
    assert ids.eos_token_ids == (vocab["<|im_end|>"], vocab["<|endoftext|>"])
    cfg = {
        "action_start_token_id": ids.action_start_token_id, "action_end_token_id": ids.action_end_token_id,
        "action_token_start_id": ids.action_token_start_id, "depth_start_token_id": ids.depth_start_token_id,
        "depth_end_token_id": ids.depth_end_token_id, "depth_token_start_id": ids.depth_token_start_id,
        "eos_token_id": vocab["<|im_end|>"], "num_action_tokens": 2048, "unrelated": 5,
    }
    from_cfg = T.TokenIds.from_config(cfg)
    assert from_cfg.eos_token_ids == (vocab["<|im_end|>"],)
    seq = T.encode_generated_ids(from_cfg, DEPTH, ACTION)
    assert seq.shape == (1 + 100 + 1 + 1 + 37 + 1 + 1,)
    assert seq[1] == vocab[f"<depth_{DEPTH[0]}>"]
    for given in (seq, seq[None, :], seq.tolist()):
        out = T.parse_generated(given, from_cfg)
        assert np.array_equal(out.depth_bins, DEPTH) and np.array_equal(out.action_ids, ACTION)
        assert out.eos == f"EOS id {vocab['<|im_end|>']}"
    # the depth-only shape predict_action returns: [1, 102], no EOS
    depth_only = T.encode_generated_ids(from_cfg, DEPTH, None, eos=False)[None, :]
    assert T.parse_generated(depth_only, from_cfg).style == "robot_depth"


def test_token_ids_contiguity_is_checked():
    vocab = _vocab()
    vocab["<depth_5>"] += 1000
    with pytest.raises(ValueError, match=r"contiguous: expected <depth_5>"):
        T.TokenIds.from_vocab(vocab)


def test_parse_ids_errors():
    ids = T.TokenIds.from_vocab(_vocab())
    seq = T.encode_generated_ids(ids, None, ACTION[:3])
    bad = seq.copy()
    bad[2] = 5  # an id that is no depth/action/EOS token
    with pytest.raises(T.TokenFormatError, match=r"position 2 \(id 5\).*got token id 5"):
        T.parse_generated(bad, ids)
    with pytest.raises(ValueError, match="`token_ids` \\(TokenIds\\) is required"):
        T.parse_generated(seq)
    with pytest.raises(TypeError, match="expected text or integer ids"):
        T.parse_generated(np.zeros((2, 3), np.int64), ids)


def _err(text):
    with pytest.raises(T.TokenFormatError) as info:
        T.parse_generated(text)
    assert isinstance(info.value, ValueError)
    return str(info.value), info.value


def test_error_missing_depth_end():
    msg, e = _err("<depth_start>" + "".join(f"<depth_{k % 128}>" for k in range(100)))
    assert "missing <depth_end>" in msg and "got end of output" in msg and "token #101" in msg
    assert e.got == "end of output"


def test_error_99_depth_codes():
    msg, e = _err(_depth_text(DEPTH[:99]) + _action_text(ACTION))
    assert "wrong number of depth codes: 99" in msg
    assert "expected exactly 100" in msg and "got <depth_end>" in msg and "token #100" in msg


def test_error_101_depth_codes():
    msg, _ = _err(_depth_text(list(DEPTH) + [5]))
    assert "too many depth codes" in msg and "got <depth_5>" in msg and "token #101" in msg
    assert "<depth_end> after exactly 100 codes" in msg


def test_error_out_of_range_codes():
    msg, e = _err(_depth_text(list(DEPTH[:50]) + [128] + list(DEPTH[51:])))
    assert "depth code out of range" in msg and "k in 0..127" in msg and "got <depth_128>" in msg
    assert "token #51" in msg and e.got == "<depth_128>"
    msg, _ = _err(_action_text([3, 2048, 4]))
    assert "action code out of range" in msg and "k in 0..2047" in msg and "got <action_2048>" in msg


def test_error_missing_action_end():
    msg, _ = _err("<action_start><action_1><action_2>")
    assert "missing <action_end> (2 action codes so far)" in msg and "got end of output" in msg


def test_error_unexpected_text_between():
    text = _depth_text(DEPTH[:40]) [:-len("<depth_end>")]
    msg, _ = _err(text + " hello " + "".join(f"<depth_{k}>" for k in DEPTH[40:]) + "<depth_end>")
    assert "unexpected token inside the depth segment" in msg and "got text 'hello'" in msg
    assert "token #41" in msg and "char " in msg
    msg, _ = _err(_depth_text(DEPTH) + " then " + _action_text(ACTION))
    assert "unexpected token after <depth_end>" in msg and "got text 'then'" in msg


def test_error_wrong_order_and_misc():
    msg, _ = _err(_action_text(ACTION) + _depth_text(DEPTH))
    assert "wrong order" in msg and "got <depth_start>" in msg
    msg, _ = _err("<action_start><action_end>")
    assert "empty action segment" in msg
    msg, _ = _err("<action_start><action_1><|im_end|><action_end>")
    assert "inside the action segment" in msg and "got <|im_end|>" in msg
    msg, _ = _err("")
    assert "no depth or action segment" in msg and "got end of output" in msg
    msg, _ = _err("<state_3>")
    assert "expected <depth_start> or <action_start>, got <state_3>" in msg
    msg, _ = _err(_action_text(ACTION) + "<|im_end|><action_start>")
    assert "only EOS tokens may follow" in msg


def test_format_helpers_validate():
    with pytest.raises(ValueError, match="expected exactly 100 codes, got 99"):
        T.format_depth_tokens(DEPTH[:99])
    with pytest.raises(ValueError, match="expected values in 0..2047, got 2048 at index 1"):
        T.format_action_tokens([1, 2048])
    with pytest.raises(ValueError, match="expected at least one code"):
        T.format_action_tokens([])
    with pytest.raises(ValueError, match="eos: expected one of"):
        T.format_generated(None, [1], eos="</s>")
    assert T.format_action_tokens([4, 0], sep=" ") == "<action_start> <action_4> <action_0> <action_end>"
    assert T.format_actions([4]) == "<action_start><action_4><action_end>"
    assert T.format_depth([0] * 100) == "<depth_start>" + "<depth_0>" * 100 + "<depth_end>"


def test_examples_parse_or_fail_as_labelled():
    ex = T.examples()
    assert len(ex) >= 3
    for name, text in ex.items():
        if name.startswith("malformed"):
            with pytest.raises(T.TokenFormatError):
                T.parse_generated(text)
        else:
            T.parse_generated(text)
