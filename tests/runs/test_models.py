"""Models: shapes, parameter counts by hand arithmetic, forward passes against functional
references written from the architecture descriptions, and that SGD lowers the loss."""

import pytest
import torch
import torch.nn.functional as F

from runs.models import MODELS, build_model

MNIST1D, MNIST, CIFAR10 = (40,), (1, 28, 28), (3, 32, 32)


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# Parameter counts from the architecture descriptions: weights (in * out, or in_ch * out_ch * k
# for convolutions) plus one bias per output.
EXPECTED_PARAMETERS = {
    ("logistic", MNIST1D): 40 * 10 + 10,
    ("logistic", MNIST): 784 * 10 + 10,
    ("logistic", CIFAR10): 3 * 32 * 32 * 10 + 10,
    # h = ReLU(Linear 40->100 (x)); h = h + ReLU(Linear 100->100 (h)); out = Linear 100->10 (h)
    ("mlp", MNIST1D): (40 * 100 + 100) + (100 * 100 + 100) + (100 * 10 + 10),
    ("mlp", MNIST): (784 * 100 + 100) + (100 * 100 + 100) + (100 * 10 + 10),
    ("mlp", CIFAR10): (3072 * 100 + 100) + (100 * 100 + 100) + (100 * 10 + 10),
    # Conv1d 1->25 k5, 25->25 k3, 25->25 k3, Linear 125->10
    ("mnist1d-cnn", MNIST1D): (1 * 25 * 5 + 25) + 2 * (25 * 25 * 3 + 25) + (125 * 10 + 10),
    # d2l LeNet: conv 6@5x5 over C channels, conv 16@5x5 over 6, Linear 400-120-84-10
    ("lenet", MNIST): (1 * 6 * 25 + 6)
    + (6 * 16 * 25 + 16)
    + (400 * 120 + 120)
    + (120 * 84 + 84)
    + (84 * 10 + 10),
    # 3x32x32: 32 -> conv pad 2: 32 -> pool: 16 -> conv 5: 12 -> pool: 6, so 16 * 6 * 6 = 576
    ("lenet", CIFAR10): (3 * 6 * 25 + 6)
    + (6 * 16 * 25 + 16)
    + (576 * 120 + 120)
    + (120 * 84 + 84)
    + (84 * 10 + 10),
    # LeNet in 1-D on 40 inputs: 40 -> conv pad 2: 40 -> pool: 20 -> conv 5: 16 -> pool: 8
    ("lenet1d", MNIST1D): (1 * 6 * 5 + 6)
    + (6 * 16 * 5 + 16)
    + (16 * 8 * 120 + 120)
    + (120 * 84 + 84)
    + (84 * 10 + 10),
}


@pytest.mark.parametrize(("name", "shape"), list(EXPECTED_PARAMETERS))
def test_output_shape_and_parameter_count(name, shape):
    model = build_model(name, shape, 10)
    assert count(model) == EXPECTED_PARAMETERS[(name, shape)]
    out = model(torch.randn(3, *shape))
    assert out.shape == (3, 10)
    assert out.dtype == torch.float32


def test_lenet_has_the_commonly_quoted_count():
    # The ReLU/max-pool LeNet on 28x28 inputs is usually quoted at 61,706 parameters.
    assert count(build_model("lenet", MNIST, 10)) == 61_706


def test_options_change_the_architecture():
    wide = build_model("mlp", MNIST1D, 10, hidden=7)
    assert count(wide) == (40 * 7 + 7) + (7 * 7 + 7) + (7 * 10 + 10)
    thin = build_model("mnist1d-cnn", MNIST1D, 10, channels=4)
    assert count(thin) == (1 * 4 * 5 + 4) + 2 * (4 * 4 * 3 + 4) + (4 * 5 * 10 + 10)
    assert build_model("logistic", MNIST1D, 3)(torch.randn(2, 40)).shape == (2, 3)


def test_cnn_accepts_a_channel_axis_and_other_lengths():
    model = build_model("mnist1d-cnn", (1, 40), 10)
    x = torch.randn(4, 40)
    torch.testing.assert_close(model(x), model(x.unsqueeze(1)), rtol=0, atol=0)
    # length 72: 72 -> (72+2-5)//2+1 = 35 -> (35+2-3)//2+1 = 18 -> (18+2-3)//2+1 = 9
    long = build_model("mnist1d-cnn", (72,), 10)
    assert long(torch.randn(2, 72)).shape == (2, 10)
    assert count(long) == (1 * 25 * 5 + 25) + 2 * (25 * 25 * 3 + 25) + (25 * 9 * 10 + 10)


def test_lenet_smallest_input():
    # 12 -> conv pad 2: 12 -> pool: 6 -> conv 5: 2 -> pool: 1, so the flatten size is 16.
    model = build_model("lenet", (2, 12, 12), 10)
    assert model(torch.randn(3, 2, 12, 12)).shape == (3, 10)
    assert model[7].in_features == 16


# Functional references, written from the descriptions; parameters taken in registration order.


def reference_logistic(params, x):
    w, b = params
    return F.linear(x.flatten(1), w, b)


def reference_mlp(params, x):
    w1, b1, w2, b2, w3, b3 = params
    h = F.relu(F.linear(x.flatten(1), w1, b1))
    h = h + F.relu(F.linear(h, w2, b2))
    return F.linear(h, w3, b3)


def reference_cnn(params, x):
    w1, b1, w2, b2, w3, b3, w4, b4 = params
    h = x.reshape(len(x), 1, -1)
    h = F.relu(F.conv1d(h, w1, b1, stride=2, padding=1))
    h = F.relu(F.conv1d(h, w2, b2, stride=2, padding=1))
    h = F.relu(F.conv1d(h, w3, b3, stride=2, padding=1))
    return F.linear(h.reshape(len(x), -1), w4, b4)


def reference_lenet(params, x):
    w1, b1, w2, b2, w3, b3, w4, b4, w5, b5 = params
    h = F.max_pool2d(F.relu(F.conv2d(x, w1, b1, padding=2)), 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, w2, b2)), 2)
    h = F.relu(F.linear(h.reshape(len(x), -1), w3, b3))
    h = F.relu(F.linear(h, w4, b4))
    return F.linear(h, w5, b5)


def reference_lenet1d(params, x):
    w1, b1, w2, b2, w3, b3, w4, b4, w5, b5 = params
    h = x.reshape(len(x), 1, -1)
    h = F.max_pool1d(F.relu(F.conv1d(h, w1, b1, padding=2)), 2)
    h = F.max_pool1d(F.relu(F.conv1d(h, w2, b2)), 2)
    h = F.relu(F.linear(h.reshape(len(x), -1), w3, b3))
    h = F.relu(F.linear(h, w4, b4))
    return F.linear(h, w5, b5)


@pytest.mark.parametrize(
    ("name", "shape", "reference"),
    [
        ("logistic", MNIST, reference_logistic),
        ("mlp", MNIST1D, reference_mlp),
        ("mnist1d-cnn", MNIST1D, reference_cnn),
        ("lenet", MNIST, reference_lenet),
        ("lenet", CIFAR10, reference_lenet),
        ("lenet1d", MNIST1D, reference_lenet1d),
        ("lenet1d", (1, 40), reference_lenet1d),
    ],
)
def test_forward_matches_functional_reference(name, shape, reference):
    model = build_model(name, shape, 10)
    x = torch.randn(5, *shape)
    expected = reference(list(model.parameters()), x)
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-6)


def test_lenet_state_dict_keys_match_d2l_sequential():
    keys = list(build_model("lenet", MNIST, 10).state_dict())
    assert keys == [f"{i}.{kind}" for i in (0, 3, 7, 9, 11) for kind in ("weight", "bias")]


def test_initialisation_follows_the_global_seed():
    torch.manual_seed(123)
    first = build_model("mnist1d-cnn", MNIST1D, 10)
    torch.manual_seed(123)
    second = build_model("mnist1d-cnn", MNIST1D, 10)
    third = build_model("mnist1d-cnn", MNIST1D, 10)
    for a, b, c in zip(first.parameters(), second.parameters(), third.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert not torch.equal(a, c)


@pytest.mark.parametrize(
    ("name", "shape", "lr"),
    [
        ("logistic", MNIST1D, 0.3),
        ("mlp", MNIST1D, 0.3),
        ("mnist1d-cnn", MNIST1D, 0.5),
        ("lenet", MNIST, 0.3),
        ("lenet", CIFAR10, 0.3),
    ],
)
def test_a_few_sgd_steps_lower_the_loss(name, shape, lr):
    model = build_model(name, shape, 10)
    x, y = torch.randn(16, *shape), torch.arange(16) % 10
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for _ in range(10):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    final = F.cross_entropy(model(x), y).item()
    assert final < 0.95 * losses[0], (losses, final)


def test_unknown_model_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown model 'resnet'") as info:
        build_model("resnet", MNIST, 10)
    for name in MODELS:
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("name", "options", "valid"),
    [
        ("mlp", {"width": 3}, "valid options: hidden"),
        ("mnist1d-cnn", {"hidden": 3, "depth": 2}, "depth, hidden for model 'mnist1d-cnn'"),
        ("logistic", {"hidden": 3}, "valid options: none"),
        ("lenet", {"channels": 3}, "valid options: none"),
    ],
)
def test_unknown_option_lists_the_valid_ones(name, options, valid):
    shape = MNIST if name == "lenet" else MNIST1D
    with pytest.raises(ValueError, match="unknown option") as info:
        build_model(name, shape, 10, **options)
    assert valid in str(info.value)


@pytest.mark.parametrize(
    ("name", "shape", "classes", "options", "message"),
    [
        ("mlp", MNIST1D, 10, {"hidden": 0}, "hidden must be a positive integer, got hidden=0"),
        ("mlp", MNIST1D, 10, {"hidden": 2.5}, "hidden=2.5"),
        ("mnist1d-cnn", MNIST1D, 10, {"channels": True}, "channels=True"),
        ("logistic", MNIST1D, 0, {}, "num_classes must be a positive integer, got num_classes=0"),
        ("logistic", (), 10, {}, "input_shape must be a non-empty tuple"),
        ("logistic", (40, -1), 10, {}, r"input_shape=\(40, -1\)"),
        ("mnist1d-cnn", MNIST, 10, {}, r"1-D examples .* got input_shape=\(1, 28, 28\)"),
        ("mnist1d-cnn", (2,), 10, {}, "too short"),
        ("lenet", MNIST1D, 10, {}, r"\(channels, height, width\), got input_shape=\(40,\)"),
        ("lenet", (1, 11, 28), 10, {}, "too small for LeNet"),
    ],
)
def test_bad_arguments_raise_value_error(name, shape, classes, options, message):
    with pytest.raises(ValueError, match=message):
        build_model(name, shape, classes, **options)
