"""DoG's ``state["_first_step"]`` flag and ``state_dict``'s post-hooks, beside dog 1.0.3: its
DoG adds the flag after torch's ``state_dict`` (and so after the post-hooks) returns, so a hook
does not see it and a dict a hook returns gets it. Before stop 91 ours added it before the hooks:
a hook saw a key that is no parameter, and a returned dict keeping only the parameters' entries
lacked the flag (``dog.DoG.load_state_dict`` then raised KeyError)."""

import pytest
import torch

import optim

dog = pytest.importorskip("dog")


def _saved(cls):
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(3, dtype=torch.float64))
    optimizer = cls([p])
    p.grad = torch.ones_like(p)
    optimizer.step()
    seen = []

    def hook(optimizer, saved):
        seen.append("_first_step" in saved["state"])
        state = {k: v for k, v in saved["state"].items() if isinstance(k, int)}
        return {"state": state, "param_groups": saved["param_groups"]}

    optimizer.register_state_dict_post_hook(hook)
    saved = optimizer.state_dict()
    return seen[0], saved


def test_a_state_dict_post_hook_sees_and_returns_what_the_packages_does():
    package_seen, package_sd = _saved(dog.DoG)
    ours_seen, ours_sd = _saved(optim.DoG)
    assert package_seen is False
    assert package_sd["state"]["_first_step"] is False
    assert ours_seen is package_seen
    assert ours_sd["state"].get("_first_step") is False
