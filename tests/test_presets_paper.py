"""Every figure module with PRESETS has a ``full`` preset; the Swish nets of kl-dynamics and
modes-shift run the paper's protocol at ``full`` (seed 000: one hidden layer Swish, SGD lr 0.5
and Adam lr 1e-3, n = 1000, mu = 3 (and 15), 2000 epochs, 3 seeds)."""
import importlib
import pkgutil

import pytest

import analysis.experiments as E

MODULES = [m.name for m in pkgutil.iter_modules(E.__path__) if not m.name.startswith("_")]


def _presets(name):
    return getattr(importlib.import_module(f"analysis.experiments.{name}"), "PRESETS", None)


@pytest.mark.parametrize("name", MODULES)
def test_full_preset_exists(name):
    pre = _presets(name)
    if pre is None:
        pytest.skip(f"{name} has no PRESETS")
    assert {"tiny", "quick", "full"} <= set(pre), f"{name}: presets {sorted(pre)}"


def _lrs(net):
    if "optimizers" in net:
        return {k: float(v) for k, v in net["optimizers"].items()}
    return {k[:-3]: float(v) for k, v in net.items() if k.endswith("_lr")}


def _seeds(net, full):
    for src in (net, full):
        if "seeds" in src:
            return list(src["seeds"])
    return [net["seed"]] if "seed" in net else []


@pytest.mark.parametrize("name, mus", [
    ("kl_dynamics", {3.0}),
    # modes-shift's net part trains one seed per optimiser: the paper's 3 seeds are not built yet
    pytest.param("modes_shift", {3.0, 15.0}, marks=pytest.mark.xfail(
        strict=True, reason="modes-shift's Swish nets train one seed, the paper three (issue 20 part 2)")),
])
def test_swish_nets_full_is_the_paper_protocol(name, mus):
    full = _presets(name)["full"]
    net = full.get("net", full)
    assert int(net.get("epochs", -1)) == 2000
    assert _lrs(net) == {"sgd": 0.5, "adam": 1e-3}
    assert len(set(_seeds(net, full))) >= 3, f"{name}: full nets train {len(set(_seeds(net, full)))} seed(s)"
    assert int(net.get("n", full.get("n"))) == 1000
    got = {float(x) for x in full.get("main_mus", [full.get("mu")])}
    assert mus <= got
