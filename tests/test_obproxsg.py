"""OBProx-SG against an independent numpy implementation of the formulas in docs/design.md, section 1."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch import nn

from sparsenet_design.errors import CheckpointError, SdesignError
from sparsenet_design.optim import OBProxSG, epochs_to_steps, l1_param_groups
from sparsenet_design.optim import kernels


# --- the reference: the two steps written from the formulas, in float64 numpy ---

def ref_p_step(x, g, lr, lam):
    y = x - lr * g
    return np.sign(y) * np.maximum(np.abs(y) - lr * lam, 0.0)


def ref_o_step(x, g, lr, lam):
    zeta = np.sign(x)
    x_hat = x - lr * (g + lam * zeta)
    return np.where(x_hat * zeta > 0, x_hat, 0.0)


def ref_momentum(buf, g, mu, dampening, nesterov):
    buf = g.copy() if buf is None else mu * buf + (1 - dampening) * g
    return buf, (g + mu * buf if nesterov else buf)


def _np(t):
    return t.detach().double().numpy().copy()


def _assert_matches(actual: torch.Tensor, expected: np.ndarray, scale: float):
    got = _np(actual)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 * scale)
    # zero patterns agree except for entries within rounding of the threshold
    differ = (got == 0) != (expected == 0)
    assert np.all(np.abs(np.where(differ, expected + got, 0)) <= 1e-6 * scale)


def _tensors(seed=0):
    """Shapes that exercise chunking (> CHUNK_ELEMENTS), small tensors and a non-contiguous one."""
    gen = torch.Generator().manual_seed(seed)
    big = torch.randn(kernels.CHUNK_ELEMENTS + 4321, generator=gen) * 0.05
    conv = torch.randn(8, 4, 3, 3, generator=gen) * 0.05
    lin = torch.randn(7, 5, generator=gen).t() * 0.05  # non-contiguous
    return [nn.Parameter(t) for t in (big, conv, lin)]


def _random_grads(params, gen):
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen) * 0.1


@pytest.mark.parametrize("compiled", [False, pytest.param(True, marks=pytest.mark.slow)])
@pytest.mark.parametrize("n_p,n_o", [(3, None), (2, 3), (0, None)])
def test_steps_match_reference(n_p, n_o, compiled):
    lr, lam = 0.1, 0.05  # lr·λ large enough that both steps zero many entries
    params = _tensors()
    opt = OBProxSG(params, lr=lr, lam=lam, n_p=n_p, n_o=n_o, compiled=compiled)
    ref = [_np(p) for p in params]
    gen = torch.Generator().manual_seed(1)
    kinds = []
    for step in range(8):
        _random_grads(params, gen)
        proximal = opt.is_p_step
        expected_kind = step < n_p if n_o is None else step % (n_p + n_o) < n_p
        assert proximal == expected_kind
        kinds.append(proximal)
        ref = [
            (ref_p_step if proximal else ref_o_step)(x, _np(p.grad), lr, lam) for x, p in zip(ref, params)
        ]
        opt.step()
        assert opt.steps_done == step + 1
        for p, r in zip(params, ref):
            _assert_matches(p, r, scale=1.0)
    assert any(kinds) == (n_p > 0) and (not all(kinds))
    assert all(float((p == 0).float().mean()) > 0.05 for p in params), "the test should exercise zeroing"


@pytest.mark.parametrize("nesterov,dampening", [(False, 0.0), (False, 0.3), (True, 0.0)])
def test_momentum_matches_reference(nesterov, dampening):
    lr, lam, mu = 0.05, 0.05, 0.9
    params = _tensors(seed=3)
    opt = OBProxSG(params, lr=lr, lam=lam, n_p=3, momentum=mu, dampening=dampening, nesterov=nesterov)
    ref = [_np(p) for p in params]
    bufs = [None] * len(params)
    gen = torch.Generator().manual_seed(4)
    for _ in range(7):
        _random_grads(params, gen)
        step = ref_p_step if opt.is_p_step else ref_o_step
        new_ref = []
        for i, (x, p) in enumerate(zip(ref, params)):
            bufs[i], d = ref_momentum(bufs[i], _np(p.grad), mu, dampening, nesterov)
            new_ref.append(step(x, d, lr, lam))
        ref = new_ref
        opt.step()
        for p, r in zip(params, ref):
            _assert_matches(p, r, scale=1.0)


@settings(max_examples=60, deadline=None)
@given(
    x=arrays(np.float32, st.integers(1, 64), elements=st.floats(-1, 1, width=32)),
    seed=st.integers(0, 2**16),
    lr=st.floats(1e-3, 1.0),
    lam=st.floats(1e-4, 1.0),  # λ = 0 means "outside the l1 term": plain SGD
)
def test_o_steps_never_flip_signs(x, seed, lr, lam):
    x[: len(x) // 4] = 0.0  # make sure some zeros are there
    p = nn.Parameter(torch.from_numpy(x.copy()))
    opt = OBProxSG([p], lr=lr, lam=lam, n_p=0)
    sign0 = np.sign(x)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(25):
        p.grad = torch.randn(p.shape, generator=gen) * 3
        opt.step()
        s = np.sign(p.detach().numpy())
        # each coordinate keeps its sign or becomes zero; zeros stay zero
        assert np.all((s == sign0) | (s == 0))
        sign0 = s
    assert not opt.is_p_step


def test_lam_zero_group_takes_plain_sgd_steps():
    torch.manual_seed(0)
    a = nn.Parameter(torch.randn(50))
    b = nn.Parameter(a.detach().clone())
    ours = OBProxSG([{"params": [a], "lam": 0.0}], lr=0.1, lam=0.5, n_p=1, momentum=0.8)
    sgd = torch.optim.SGD([b], lr=0.1, momentum=0.8, foreach=True)
    for _ in range(4):  # P, then O-steps: neither may threshold nor stop sign changes
        g = torch.randn(50) * 5
        a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        sgd.step()
        assert torch.equal(a, b)


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))


def _batch(seed, n=32):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 10, generator=gen), torch.randint(0, 3, (n,), generator=gen)


def _train(model, opt, steps, start=0):
    for i in range(start, start + steps):
        x, y = _batch(i)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def test_resume_from_state_dict_is_exact():
    def make(model):
        return OBProxSG(l1_param_groups(model, lam=0.02), lr=0.2, lam=0.02, n_p=3, n_o=2, momentum=0.5)

    model = _mlp()
    opt = make(model)
    _train(model, opt, 4)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    _train(model, opt, 5, start=4)

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed = _mlp(seed=123)  # different init: everything must come from the checkpoint
    resumed.load_state_dict(saved["model"])
    opt2 = make(resumed)
    opt2.load_state_dict(saved["opt"])
    assert opt2.steps_done == 4 and opt2.is_p_step == opt.schedule.is_p_step(4)
    _train(resumed, opt2, 5, start=4)
    for a, b in zip(model.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    assert opt2.steps_done == opt.steps_done == 9


def test_loading_a_foreign_state_dict_is_a_clear_error():
    model = _mlp()
    opt = OBProxSG(model.parameters(), lr=0.1, lam=0.1, n_p=1)
    with pytest.raises(CheckpointError, match="OBProx-SG"):
        opt.load_state_dict(torch.optim.SGD(model.parameters(), lr=0.1).state_dict())


def test_gradient_accumulation_equals_one_big_batch():
    k = 4
    big, small = _mlp(), _mlp()
    small.load_state_dict(big.state_dict())
    big.eval(), small.eval()  # BatchNorm statistics would differ per micro-batch
    opt_big = OBProxSG(l1_param_groups(big, 0.05), lr=0.3, lam=0.05, n_p=1)
    opt_small = OBProxSG(l1_param_groups(small, 0.05), lr=0.3, lam=0.05, n_p=1)
    for step in range(3):  # a P-step then O-steps
        x, y = _batch(step, n=32)
        opt_big.zero_grad()
        nn.functional.cross_entropy(big(x), y).backward()
        opt_big.step()
        opt_small.zero_grad()
        for xs, ys in zip(x.chunk(k), y.chunk(k)):
            (nn.functional.cross_entropy(small(xs), ys) / k).backward()
        opt_small.step()
        for a, b in zip(big.parameters(), small.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert opt_big.steps_done == opt_small.steps_done == 3


def test_grad_scaler_step_equals_unscaled_step_and_skips_inf():
    plain, scaled = _mlp(), _mlp()
    scaled.load_state_dict(plain.state_dict())
    opt_plain = OBProxSG(l1_param_groups(plain, 0.05), lr=0.3, lam=0.05, n_p=1)
    opt_scaled = OBProxSG(l1_param_groups(scaled, 0.05), lr=0.3, lam=0.05, n_p=1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    for step in range(3):
        x, y = _batch(step)
        opt_plain.zero_grad()
        nn.functional.cross_entropy(plain(x), y).backward()
        opt_plain.step()
        opt_scaled.zero_grad()
        scaler.scale(nn.functional.cross_entropy(scaled(x), y)).backward()
        scaler.step(opt_scaled)
        scaler.update()
        for a, b in zip(plain.parameters(), scaled.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    # an overflowing step is skipped and does not advance the P/O counter
    before = [p.detach().clone() for p in scaled.parameters()]
    opt_scaled.zero_grad()
    x, y = _batch(99)
    scaler.scale(nn.functional.cross_entropy(scaled(x), y) * float("inf")).backward()
    scaler.step(opt_scaled)
    scaler.update()
    assert opt_scaled.steps_done == 3
    assert all(torch.equal(a, b) for a, b in zip(before, scaled.parameters()))


def test_bf16_autocast_step_follows_the_formulas():
    model = _mlp()
    model.eval()
    lr, lam = 0.3, 0.05
    opt = OBProxSG(l1_param_groups(model, lam), lr=lr, lam=lam, n_p=1)
    weight = model[3].weight
    for step in range(3):
        x, y = _batch(step)
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        assert weight.grad.dtype == torch.float32
        expected = (ref_p_step if opt.is_p_step else ref_o_step)(_np(weight), _np(weight.grad), lr, lam)
        opt.step()
        _assert_matches(weight, expected, scale=1.0)


def test_l1_param_groups_penalise_only_prunable_weights():
    conv = nn.Conv2d(3, 4, 3)
    model = nn.Sequential(conv, nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2), nn.PReLU())
    model.tied = nn.Linear(4, 2)
    model.tied.weight = model[3].weight  # shared weight: appears once
    groups = l1_param_groups(model, lam=1e-3, lr=0.5)
    assert [g["lam"] for g in groups] == [1e-3, 0.0]
    assert all(g["lr"] == 0.5 for g in groups)
    l1_ids = {id(p) for p in groups[0]["params"]}
    assert l1_ids == {id(conv.weight), id(model[3].weight)}
    assert len(groups[0]["params"]) == 2
    others = {id(p) for p in groups[1]["params"]}
    expected_others = {id(p) for p in model.parameters()} - l1_ids
    assert others == expected_others and len(groups[1]["params"]) == len(expected_others)
    OBProxSG(groups, lr=0.1, lam=1.0, n_p=1)  # the groups are accepted as they are
    only_bias_free = l1_param_groups(nn.Linear(3, 3, bias=False), lam=0.1)
    assert len(only_bias_free) == 1


def test_epochs_to_steps():
    assert epochs_to_steps(3, 10) == 30
    assert epochs_to_steps(2, 10, accumulation=3) == 8  # ceil(10/3) = 4 steps an epoch
    assert epochs_to_steps(0.5, 7) == 4
    assert epochs_to_steps(0, 7) == 0
    with pytest.raises(SdesignError):
        epochs_to_steps(1, 0)
    with pytest.raises(ValueError):
        epochs_to_steps(-1, 5)


@pytest.mark.parametrize(
    "kwargs",
    [dict(lr=-1.0), dict(lam=float("nan")), dict(n_p=1.5), dict(n_p=-1), dict(n_o=-2), dict(n_p=0, n_o=0),
     dict(momentum=1.0), dict(nesterov=True), dict(nesterov=True, momentum=0.9, dampening=0.1)],
)
def test_bad_settings_are_clear_errors(kwargs):
    args = dict(lr=0.1, lam=0.1, n_p=1) | kwargs
    with pytest.raises(SdesignError, match="OBProx-SG"):
        OBProxSG([nn.Parameter(torch.zeros(2))], **args)


def test_sparse_gradients_are_refused():
    emb = nn.Embedding(10, 3, sparse=True)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(SdesignError, match="sparse"):
        OBProxSG(emb.parameters(), lr=0.1, lam=0.1, n_p=1).step()


def test_lr_times_lambda_governs_density_on_digits():
    """The paper's claim at tiny scale: equal lr·λ → similar density, larger lr·λ → sparser."""
    from sklearn.datasets import load_digits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        digits = load_digits()
        x = torch.tensor(digits.images[:1024], dtype=torch.float32).unsqueeze(1) / 16.0
        y = torch.tensor(digits.target[:1024])
        torch.manual_seed(0)
        m0 = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                           nn.MaxPool2d(2), nn.Flatten(), nn.Linear(512, 64), nn.ReLU(), nn.Linear(64, 10))
        pre = torch.optim.Adam(m0.parameters(), lr=3e-3)
        for _ in range(3):
            for xb, yb in zip(x.split(32), y.split(32)):
                pre.zero_grad()
                nn.functional.cross_entropy(m0(xb), yb).backward()
                pre.step()

        def density_after(lr, lam, epochs=3):
            model = _copy(m0)
            opt = OBProxSG(l1_param_groups(model, lam), lr=lr, lam=lam, n_p=10**6)
            for epoch in range(epochs):
                order = torch.randperm(len(y), generator=torch.Generator().manual_seed(epoch))
                for idx in order.split(32):
                    opt.zero_grad()
                    nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
                    opt.step()
            from sparsenet_design.design.density import density_report
            return density_report(model).overall

        a, b = density_after(0.1, 1e-3), density_after(0.01, 1e-2)  # lr·λ = 1e-4
        sparser = density_after(0.1, 1e-2)  # lr·λ = 1e-3
    finally:
        torch.set_num_threads(threads)
    assert a < 0.97 and b < 0.97, "lr·λ = 1e-4 should already prune"
    assert sparser < min(a, b) - 0.2
    assert abs(a - b) < 0.25 * (min(a, b) - sparser)


def _copy(model):
    import copy

    return copy.deepcopy(model)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("compiled", [False, True])
def test_cuda_steps_match_reference(compiled):
    lr, lam = 0.1, 0.05
    params = [nn.Parameter(p.detach().cuda()) for p in _tensors(seed=7)]
    opt = OBProxSG(params, lr=lr, lam=lam, n_p=2, compiled=compiled)
    ref = [_np(p.cpu()) for p in params]
    gen = torch.Generator().manual_seed(8)
    for _ in range(5):
        for p in params:
            p.grad = (torch.randn(p.shape, generator=gen) * 0.1).cuda()
        step = ref_p_step if opt.is_p_step else ref_o_step
        ref = [step(x, _np(p.grad.cpu()), lr, lam) for x, p in zip(ref, params)]
        opt.step()
        for p, r in zip(params, ref):
            _assert_matches(p.cpu(), r, scale=1.0)
