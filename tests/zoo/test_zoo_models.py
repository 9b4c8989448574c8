"""Every zoo model: shapes at several sizes/batches, finiteness, determinism, size, gradients, SegNet unpooling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import segdeploy.zoo as zoo

SEEDS = ["bisenet", "fcn8s", "hrnet", "ocrnet", "refinenet", "segnet"]

# (min, max) parameter counts at num_classes=5: compact but not toy.
PARAM_BOUNDS = (200_000, 2_000_000)


def _shapes(name: str) -> list[tuple[int, int, int, int]]:
    e = zoo.entry(name)
    m = max(e.spatial_multiple, 16)
    shapes = [(1, 3, 2 * m, 2 * m), (2, 3, 3 * m, 2 * m)]
    if e.spatial_multiple <= 16:
        shapes.append((3, 3, 8 * m, 4 * m))
    if e.any_size:  # an irregular size: not a multiple of anything the model strides by
        shapes.append((2, 3, 67, 45))
    return shapes


@pytest.mark.parametrize("name", SEEDS)
def test_output_shape_and_finite(name):
    torch.manual_seed(0)
    model = zoo.create(name, num_classes=5).eval()
    for shape in _shapes(name):
        x = torch.randn(*shape)
        with torch.no_grad():
            y = model(x)
        assert y.shape == (shape[0], 5, shape[2], shape[3]), (name, shape)
        assert y.dtype == torch.float32
        assert torch.isfinite(y).all(), (name, shape)
        assert y.std() > 0, (name, shape)  # not a constant map


@pytest.mark.parametrize("name", SEEDS)
def test_in_channels_and_num_classes(name):
    model = zoo.create(name, num_classes=2, in_channels=1).eval()
    with torch.no_grad():
        y = model(torch.randn(1, 1, 64, 64))
    assert y.shape == (1, 2, 64, 64)


@pytest.mark.parametrize("name", SEEDS)
def test_deterministic_under_seed(name):
    torch.manual_seed(123)
    a = zoo.create(name, num_classes=4).eval()
    torch.manual_seed(123)
    b = zoo.create(name, num_classes=4).eval()
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ya, yb, ya2 = a(x), b(x), a(x)
    assert torch.equal(ya, yb)
    assert torch.equal(ya, ya2)


@pytest.mark.parametrize("name", SEEDS)
def test_parameter_count_within_bounds(name):
    n = sum(p.numel() for p in zoo.create(name, num_classes=5).parameters())
    assert PARAM_BOUNDS[0] <= n <= PARAM_BOUNDS[1], (name, n)


@pytest.mark.parametrize("name", SEEDS)
def test_overfits_one_tiny_batch(name):
    """Gradients reach the parameters and ten Adam steps reduce the loss on one fixed batch."""
    torch.manual_seed(0)
    model = zoo.create(name, num_classes=3).train()
    # three classes in blocks; the input carries a noisy hint of them, so the map is learnable quickly
    target = torch.zeros(2, 32, 32, dtype=torch.long)
    target[:, :16] = 1
    target[:, :, :16] += 1
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) + target[:, None].float()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(10):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), target)
        loss.backward()
        losses.append(loss.item())
        opt.step()
    with_grad = [p for p in model.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert len(with_grad) == len(list(model.parameters())), name
    assert min(losses[-3:]) < 0.7 * losses[0], (name, losses)


def _windows(t: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, H//2, W//2, 4]: the 2x2 pooling windows (trailing odd row/col dropped)."""
    n, c, h, w = t.shape
    t = t[:, :, : h // 2 * 2, : w // 2 * 2]
    return t.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)


@pytest.mark.parametrize("shape", [(2, 3, 64, 64), (1, 3, 67, 45)])
def test_segnet_unpool_places_values_at_pool_indices(shape):
    """Each decoder's unpooled input carries every value at the argmax position of its encoder window, zeros elsewhere."""
    torch.manual_seed(0)
    model = zoo.create("segnet", num_classes=4).eval()
    enc_out, dec_in, dec_out = [], [], []

    def on_encoder(mod, inputs, output):
        enc_out.append(output)

    def on_decoder(mod, inputs, output):  # the decoder's input is the unpooled map
        dec_in.append(inputs[0])
        dec_out.append(output)

    hooks = [e.register_forward_hook(on_encoder) for e in model.encoders]
    hooks += [d.register_forward_hook(on_decoder) for d in model.decoders]
    with torch.no_grad():
        model(torch.randn(*shape))
    for h in hooks:
        h.remove()
    assert len(enc_out) == len(dec_in) == 4
    for k, unpooled in enumerate(dec_in):
        feat = enc_out[-1 - k]  # the encoder feature whose pool indices this unpool uses
        assert unpooled.shape == feat.shape
        h, w = feat.shape[-2:]
        # trailing odd row/column never receives a value
        assert (unpooled[:, :, h // 2 * 2 :, :] == 0).all() and (unpooled[:, :, :, w // 2 * 2 :] == 0).all()
        # the values that were unpooled: the pooled encoder output (k = 0) or the previous decoder's output
        values = _windows(feat).amax(-1) if k == 0 else dec_out[k - 1]
        uw, fw = _windows(unpooled), _windows(feat)
        assert ((uw != 0).sum(-1) <= 1).all()  # at most one position per window
        assert torch.equal(uw.sum(-1), values)  # exactly the value, nothing added or lost
        # the non-zero position is where the encoder window had its maximum
        nz = uw != 0
        assert torch.equal(fw[nz], fw.amax(-1, keepdim=True).expand_as(fw)[nz])
        assert nz.any()


def test_fcn8s_exact_at_multiples_of_32():
    """At multiples of 32 no crop trims anything: every upsampled map matches its skip exactly."""
    model = zoo.create("fcn8s", num_classes=3).eval()
    sizes: dict[str, tuple[int, int]] = {}
    names = ("upscore2", "score_pool4", "upscore_pool4", "score_pool3", "upscore8")
    hooks = [
        getattr(model, n).register_forward_hook(lambda mod, i, o, n=n: sizes.__setitem__(n, tuple(o.shape[-2:])))
        for n in names
    ]
    with torch.no_grad():
        model(torch.randn(1, 3, 96, 160))
    for h in hooks:
        h.remove()
    assert sizes == {
        "upscore2": (6, 10),
        "score_pool4": (6, 10),
        "upscore_pool4": (12, 20),
        "score_pool3": (12, 20),
        "upscore8": (96, 160),
    }
