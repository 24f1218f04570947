"""Audit of stop 88: ``fused=True`` with gradients of another dtype than their parameters
(``p.grad_dtype = None``), which torch's fused kernels refuse at the step."""

import pytest
import torch

import optim

PAIRS = [
    (torch.bfloat16, torch.float32),
    (torch.float32, torch.float64),
    (torch.float32, torch.bfloat16),
]


def _parameter(dtype: torch.dtype, grad_dtype: torch.dtype) -> torch.nn.Parameter:
    p = torch.nn.Parameter(torch.linspace(-1, 1, 6, dtype=dtype))
    p.grad_dtype = None  # (torch 2.13: a gradient of another dtype may then be set)
    p.grad = torch.full((6,), 0.5, dtype=grad_dtype)
    return p


@pytest.mark.parametrize(("dtype", "grad_dtype"), PAIRS, ids=str)
@pytest.mark.parametrize("name", ["Adam", "AdamW", "SGD", "Adagrad"])
def test_fused_refuses_a_gradient_of_another_dtype_as_torch_does(name, dtype, grad_dtype):
    """torch's fused kernels raise ``RuntimeError: expected scalar type X but found Y`` at the
    first step and leave the parameter where it was; ours trained on (Adagrad), moved the
    parameter and then raised another error (SGD with momentum) or raised an internal one."""
    kwargs = {"lr": 0.1, "fused": True, **({"momentum": 0.9} if name == "SGD" else {})}
    theirs, ours = _parameter(dtype, grad_dtype), _parameter(dtype, grad_dtype)
    with pytest.raises(RuntimeError) as torch_error:
        getattr(torch.optim, name)([theirs], **kwargs).step()
    before = ours.detach().clone()
    with pytest.raises(RuntimeError) as our_error:
        getattr(optim, name)([ours], **kwargs).step()
    assert str(our_error.value).startswith(str(torch_error.value))
    assert torch.equal(ours.detach(), before)
    assert torch.equal(theirs.detach(), before)
