"""Test killing optim/dog.py mutant B22 of audit 91b: the saved ``state['_first_step']`` is the
package's optimizer-wide flag (dog 1.0.3: True until the first step, False after, whatever
groups are added later), so a group added after the first step does not make it True."""

import pytest
import torch

import optim

dog = pytest.importorskip("dog")


@pytest.mark.parametrize("name", ["DoG", "LDoG"])
@pytest.mark.parametrize("impl", ["foreach", "single", "flat"])
def test_first_step_flag_after_a_group_is_added_later_is_the_packages(name, impl):
    flags = []
    for make in (getattr(dog, name), lambda ps: getattr(optim, name)(ps, impl=impl)):
        torch.manual_seed(0)
        a = torch.nn.Parameter(torch.randn(4, dtype=torch.float64))
        b = torch.nn.Parameter(torch.randn(3, dtype=torch.float64))
        optimizer = make([a])
        saved_before = optimizer.state_dict()["state"]["_first_step"]
        a.grad = torch.ones_like(a)
        optimizer.step()
        optimizer.add_param_group({"params": [b]})
        flags.append((saved_before, optimizer.state_dict()["state"]["_first_step"]))
    package, ours = flags
    assert package == (True, False)
    assert ours == package
