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


def _net(full):
    return full.get("net", full)


def _kl_every(net):
    """Epochs between exact-KL checkpoints (``kl_every`` or ``epochs / n_checkpoints``)."""
    if "kl_every" in net:
        return float(net["kl_every"])
    return float(net["epochs"]) / float(net["n_checkpoints"])


@pytest.mark.parametrize("name, mus", [("kl_dynamics", {3.0}), ("modes_shift", {3.0, 15.0})])
def test_swish_nets_full_is_the_paper_protocol(name, mus):
    """What both presets already have: 2000 epochs, SGD lr 0.5 and Adam lr 1e-3, n = 1000, the mus."""
    full = _presets(name)["full"]
    net = _net(full)
    assert int(net.get("epochs", -1)) == 2000
    assert _lrs(net) == {"sgd": 0.5, "adam": 1e-3}
    assert int(net.get("n", full.get("n"))) == 1000
    got = {float(x) for x in full.get("main_mus", [full.get("mu")])}
    assert mus <= got


@pytest.mark.parametrize("name, check", [
    ("kl_dynamics", "three_seeds"),
    ("modes_shift", "three_seeds"),
    # the paper's SGD KL is smallest near epoch 800: checkpoints every <= 50 epochs resolve it
    ("kl_dynamics", "kl_every_50_epochs"),
    ("modes_shift", "kl_every_50_epochs"),
    ("kl_dynamics", "quick_fewer_epochs"),
    ("modes_shift", "quick_fewer_epochs"),
])
def test_swish_nets_full_protocol_values(name, check):
    """The rest of the paper's protocol, one case per value: 3 seeds, exact KL every <= 50
    epochs at full; quick trains fewer epochs."""
    pre = _presets(name)
    full, net = pre["full"], _net(pre["full"])
    if check == "three_seeds":
        assert len(set(_seeds(net, full))) >= 3, f"{name}: full nets train {len(set(_seeds(net, full)))} seed(s)"
    elif check == "kl_every_50_epochs":
        assert _kl_every(net) <= 50, f"{name}: exact KL every {_kl_every(net):g} epochs"
    else:
        q = _net(pre["quick"])
        assert 0 < int(q["epochs"]) <= int(net["epochs"])


@pytest.mark.parametrize("name", ["kl_dynamics", "modes_shift"])
@pytest.mark.parametrize("preset", ["tiny", "quick", "full"])
def test_swish_nets_one_point_per_optimizer_and_seed(name, preset):
    """The nets' tasks: one per (main mu, optimizer, net seed), every seed of the preset, the
    same training otherwise; 3 seeds at quick and full, 1 at tiny (seconds)."""
    mod = importlib.import_module(f"analysis.experiments.{name}")
    p = mod.PRESETS[preset]
    seeds = list(p["net"]["seeds"])
    assert len(set(seeds)) == (1 if preset == "tiny" else 3)
    nets = [t.params for t in mod.tasks(p) if t.function.__name__ == "net_point"]
    mus = p.get("main_mus", [p.get("mu")])
    keys = {(float(q["mu"]), q["optimizer"], q["seed"]) for q in nets}
    assert len(nets) == len(keys) == len(mus) * len(_lrs(p["net"])) * len(seeds)
    assert keys == {(float(m), o, s) for m in mus for o in _lrs(p["net"]) for s in seeds}
    assert {int(q["epochs"]) for q in nets} == {int(p["net"]["epochs"])}
    assert {int(q["n_checkpoints"]) for q in nets} == {int(p["net"]["n_checkpoints"])}


def test_real_digits_full_is_the_stated_protocol():
    """README/docs: load_digits, K = 10, Adam, >= 3 seeds, fixed epochs, both pairs the same net."""
    from analysis.experiments import real_digits as R

    for name in ("tiny", "quick", "full"):
        p = R.PRESETS[name]
        assert p["n_clusters"] == 10 and p["idx_images"] is None
        assert len(set(p["seeds"])) >= 3
    full = R.PRESETS["full"]
    assert full["epochs"] == 1000 and full["channels"] == 32 and full["lr"] == 2e-3
    assert full["n_train"] is None and len(full["seeds"]) == 5
    tasks = R.tasks(full)
    assert {t.params["pair"] for t in tasks} == {"nearest", "farthest"}
    same = {k: v for k, v in tasks[0].params.items() if k not in ("pair", "seed")}
    assert all({k: v for k, v in t.params.items() if k not in ("pair", "seed")} == same for t in tasks)


def _readme_full_table():
    """``{figure: (points, [(key, value), ...])}`` from the README's table of full presets."""
    import ast
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = text.split("#### The full presets", 1)[1].split("\n\n####", 1)[0]
    rows = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[1].isdigit():
            continue
        pairs = []
        for item in re.findall(r"`([^`]+)`", cells[2]):
            key, value = (x.strip() for x in item.split("=", 1))
            pairs.append((key, ast.literal_eval(value)))      # literals only, never eval
        rows[cells[0]] = (int(cells[1]), pairs)
    return rows


def test_readme_states_every_full_preset_and_its_parameters_are_the_presets():
    from analysis import figures as F

    rows = _readme_full_table()
    assert set(rows) == set(F.FIGURES)
    for name, (points, pairs) in rows.items():
        fig = F.get(name)
        full = fig.presets["full"]
        assert len(fig.experiment.tasks(full)) == points, name
        assert pairs, name
        for key, value in pairs:
            node = full
            for part in key.lstrip("#").split("."):
                node = node[part]
            got = len(node) if key.startswith("#") else node
            assert got == value, f"{name}: README says {key} = {value!r}, the preset has {got!r}"
