"""The flow-matching action expert (molmoact2.md §6): structure, zero-init, KV conditioning, loss, Euler."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from _nano_fixtures import one_thread_fixture, randomize_  # noqa: E402

one_thread = one_thread_fixture()
from molmoact2.models.nano.action_expert import (  # noqa: E402
    ActionExpert, euler_integrate, flow_matching_loss, sample_time)
from molmoact2.models.nano.configuration_nano import NanoActionExpertConfig  # noqa: E402

KV_DIM, LAYERS, T_CTX, H = 24, 3, 11, 8


def _expert(seed=0, live=False):
    torch.manual_seed(seed)
    ex = ActionExpert(NanoActionExpertConfig(hidden_size=32, num_heads=4, num_layers=LAYERS, max_action_horizon=H), KV_DIM)
    if live:
        randomize_(ex, seed)
    return ex


def _contexts(seed=0, b=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(b, T_CTX, KV_DIM, generator=g), torch.randn(b, T_CTX, KV_DIM, generator=g)) for _ in range(LAYERS)]


def test_structure_one_shared_context_projection():
    ex = _expert()
    names = [n for n, _ in ex.named_parameters()]
    assert [n for n in names if "context_k_proj" in n] == ["context_k_proj.weight"]
    assert [n for n in names if "context_v_proj" in n] == ["context_v_proj.weight"]
    assert ex.context_k_proj.bias is None and ex.context_k_proj.in_features == KV_DIM
    assert not any(p for n, p in ex.named_parameters() if n.startswith("context_norm"))  # parameter-free RMSNorm
    assert len(ex.blocks) == LAYERS
    for block in ex.blocks:
        mod = block.adaLN_modulation[-1]
        assert mod.out_features == 9 * 32 and not mod.weight.any() and not mod.bias.any()
        assert not hasattr(block, "context_k_proj")
    assert ex.final_modulation[-1].out_features == 2 * 32 and not ex.final_modulation[-1].weight.any()
    assert ex.final_proj.out_features == 32 and not ex.final_proj.weight.any()
    assert ex.input_proj.in_features == 32 and ex.time_mlp[0].in_features == 256


def test_zero_init_euler_returns_masked_noise_and_constant_velocity_adds_up():
    ex = _expert()
    x0 = torch.randn(1, H, 32, generator=torch.Generator().manual_seed(1))
    dim_mask = torch.zeros(32)
    dim_mask[:6] = 1
    ctx, mask = _contexts(), torch.ones(1, T_CTX, dtype=torch.bool)
    states = euler_integrate(ex, x0, ctx, mask, 10, dim_mask)
    assert len(states) == 11
    assert torch.equal(states[-1], x0 * dim_mask)  # v == 0 exactly at init
    # Weight zero, bias b: v = b everywhere; 10 Euler steps of dt = 0.1 add exactly b (masked).
    b = torch.linspace(-1, 1, 32)
    with torch.no_grad():
        ex.final_proj.bias.copy_(b)
    states = euler_integrate(ex, x0, ctx, mask, 10, dim_mask)
    assert torch.allclose(states[-1], (x0 + b) * dim_mask, atol=1e-5)
    assert torch.allclose(states[5], (x0 + 0.5 * b) * dim_mask, atol=1e-5)


def test_block_l_reads_layer_l_cache():
    ex = _expert(live=True).eval()
    ctx, mask = _contexts(), torch.ones(1, T_CTX, dtype=torch.bool)
    x = torch.randn(1, H, 32, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([0.3])

    def per_block(contexts):
        outs, h = [], ex.input_proj(x)
        c = ex.time_mlp(__import__("molmoact2.models.nano.action_expert", fromlist=["x"]).timestep_embedding(t, 256))
        for block, (k, v) in zip(ex.blocks, ex.project_contexts(contexts)):
            h = block(h, c, k, v, mask[:, None, None, :])
            outs.append(h)
        return outs

    with torch.no_grad():
        base = per_block(ctx)
        for layer in range(LAYERS):
            bumped = [(k.clone(), v.clone()) for k, v in ctx]
            bumped[layer][0].add_(1.0)
            outs = per_block(bumped)
            for j in range(LAYERS):
                changed = not torch.allclose(outs[j], base[j])
                assert changed == (j >= layer), (layer, j)  # block l is the first to see layer l's change
        # Masked-out context tokens are ignored.
        m = mask.clone()
        m[0, -3:] = False
        junk = [(k.clone(), v.clone()) for k, v in ctx]
        for k, v in junk:
            k[0, -3:] = 100.0
            v[0, -3:] = -100.0
        v1 = ex(x, t, ex.project_contexts(ctx), m)
        v2 = ex(x, t, ex.project_contexts(junk), m)
    assert torch.allclose(v1, v2, atol=1e-5)


def test_time_sampling_is_shifted_beta_1_1p5():
    t = sample_time(200_000, torch.Generator().manual_seed(0))
    assert float(t.min()) >= 0.001 and float(t.max()) <= 1.0
    # Beta(1, 1.5): mean 1/2.5 = 0.4; shifted 0.001 + 0.999 * 0.4.
    assert abs(float(t.mean()) - (0.001 + 0.999 * 0.4)) < 0.003
    assert float((t < 0.5).float().mean()) == pytest.approx(1 - 0.5 ** 1.5, abs=0.005)


def test_flow_loss_is_masked_and_decreases():
    ex = _expert(seed=3)
    g = torch.Generator().manual_seed(0)
    actions = torch.zeros(4, H, 32)
    actions[:, :, :6] = torch.linspace(-0.8, 0.8, H)[None, :, None] * torch.tensor([1.0, -1, 0.5, 0.2, -0.3, 0.9])
    mask = torch.zeros_like(actions)
    mask[:, :, :6] = 1
    ctx, cmask = _contexts(b=4), torch.ones(4, T_CTX, dtype=torch.bool)
    # Padded dims do not count: garbage there leaves the loss unchanged.
    junk = actions.clone()
    junk[:, :, 6:] = 5.0
    l1 = flow_matching_loss(ex, actions, mask, ctx, cmask, torch.Generator().manual_seed(1))
    l2 = flow_matching_loss(ex, junk, mask, ctx, cmask, torch.Generator().manual_seed(1))
    assert torch.allclose(l1, l2)
    opt = torch.optim.Adam(ex.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = flow_matching_loss(ex, actions, mask, ctx, cmask, g, num_noise_samples=4)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5, losses


@pytest.mark.parametrize("b,padded", [(1, False), (2, True)])
def test_planned_euler_matches_the_plain_reference(b, padded):
    # euler_integrate precomputes the time conditioning, context heads, RoPE and mask once per chunk;
    # it must give the same chunk as the plain loop over the training-time forward.
    from molmoact2.models.nano.action_expert import euler_integrate_reference

    ex = _expert(3, live=True)
    ctx = _contexts(3, b)
    mask = torch.ones(b, T_CTX, dtype=torch.bool)
    if padded:
        mask[1, :4] = False  # left padding of the second sample: it must not see those keys
    x0 = torch.randn(b, H, 32, generator=torch.Generator().manual_seed(3))
    dim_mask = (torch.arange(32) < 6).float()
    fast = euler_integrate(ex, x0, ctx, mask, 7, dim_mask)
    ref = euler_integrate_reference(ex, x0, ctx, mask, 7, dim_mask)
    assert len(fast) == len(ref) == 8
    moved = (ref[-1] - ref[0]).abs().max()
    assert moved > 0.05  # a live expert: the check below is not comparing noise with itself
    for a, r in zip(fast, ref):
        assert torch.allclose(a, r, atol=1e-5, rtol=1e-5), (a - r).abs().max()
    if padded:  # the mask is honoured: changing a hidden key changes nothing, a visible one does
        hidden = [(k.clone(), v.clone()) for k, v in ctx]
        hidden[0][0][1, :4] += 5.0
        assert torch.allclose(euler_integrate(ex, x0, hidden, mask, 7, dim_mask)[-1][1], fast[-1][1], atol=1e-6)
        hidden[0][0][1, 6] += 5.0
        assert not torch.allclose(euler_integrate(ex, x0, hidden, mask, 7, dim_mask)[-1][1], fast[-1][1], atol=1e-4)


def test_a_prefix_pins_the_first_actions_at_every_step_and_the_rest_reads_it():
    """Carry-over: the first k actions follow the flow's own path from the start noise to the prefix
    (x_t = (1 - t) eps + t prefix at every step, the prefix itself at the end); the free actions attend
    to them, so another prefix changes them; the planned and the plain loop agree."""
    from molmoact2.models.nano.action_expert import euler_integrate_reference

    ex = _expert(5, live=True)
    ctx = _contexts(5, 1)
    mask = torch.ones(1, T_CTX, dtype=torch.bool)
    g = torch.Generator().manual_seed(5)
    x0 = torch.randn(1, H, 32, generator=g)
    dim_mask = (torch.arange(32) < 6).float()
    prefix = torch.randn(1, 4, 32, generator=g) * dim_mask
    fast = euler_integrate(ex, x0, ctx, mask, 6, dim_mask, prefix)
    ref = euler_integrate_reference(ex, x0, ctx, mask, 6, dim_mask, prefix)
    for i, (a, r) in enumerate(zip(fast, ref)):
        assert torch.allclose(a, r, atol=1e-5, rtol=1e-5), (i, (a - r).abs().max())
        t = i / 6
        assert torch.allclose(a[:, :4], (1 - t) * x0[:, :4] * dim_mask + t * prefix, atol=1e-6), i
    assert torch.equal(fast[-1][:, :4], prefix)
    free = fast[-1][:, 4:]
    other = euler_integrate(ex, x0, ctx, mask, 6, dim_mask, -prefix)[-1][:, 4:]
    assert (free - other).abs().max() > 1e-3  # the free actions read the pinned ones
    plain = euler_integrate(ex, x0, ctx, mask, 6, dim_mask)
    assert not torch.allclose(plain[-1][:, 4:], free, atol=1e-4)
    for bad in (torch.zeros(1, H, 32), torch.zeros(1, 3, 6), torch.zeros(4, 32)):
        with pytest.raises(ValueError, match="prefix: expected"):
            euler_integrate(ex, x0, ctx, mask, 6, dim_mask, bad)
