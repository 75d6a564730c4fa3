"""Every figure at its tiny preset: the data behind it, not just that files exist.

One module-scoped run per figure (into a temporary cache and output
directory) feeds all checks; the cached rerun, the CLI and the scripts then
read from that cache.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

xr = pytest.importorskip("xarray")

from analysis import figures as F  # noqa: E402
from rfdiff.run.cache import Cache  # noqa: E402
from rfdiff.io import load_dataset, read_provenance  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("figures")


@pytest.fixture(scope="module")
def cache(workdir):
    return Cache(workdir / "cache")


@pytest.fixture(scope="module")
def runs(workdir, cache):
    """name -> FigureRun of the tiny preset (computed once for the module)."""
    out = {}
    for name in F.FIGURES:
        out[name] = F.make(name, "tiny", workdir / "out", cache=cache)
    return out


def _finite(a):
    return np.all(np.isfinite(np.asarray(a, dtype=float)))


# --------------------------------------------------------------------------- files and provenance

@pytest.mark.parametrize("name", list(F.FIGURES))
def test_files_and_provenance(runs, name):
    run = runs[name]
    suffixes = sorted(p.suffix for p in run.paths)
    assert suffixes == [".nc", ".pdf", ".png"]
    for p in run.paths:
        assert p.is_file() and p.stat().st_size > 1000
    assert run.paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ds = load_dataset([p for p in run.paths if p.suffix == ".nc"][0])
    prov = read_provenance(ds)
    for key in ("versions", "git", "code_version", "params", "seeds", "timestamp"):
        assert key in prov, key
    assert prov["params"]["figure"] == name
    assert prov["git"]["revision"]
    assert prov["versions"]["numpy"]
    assert json.loads(ds.attrs["preset_params_json"]) == F.get(name).presets["tiny"]
    assert ds.attrs["figure"] == name
    assert ds.attrs["regime"] == F.get(name).experiment.regime != ""
    assert run.summary


def test_cached_rerun_is_fast(runs, workdir, cache):
    first = runs["kl-dynamics"]
    assert not first.cache_hit
    again = F.make("kl-dynamics", "tiny", workdir / "out2", cache=cache)
    assert again.cache_hit
    assert first.seconds_compute >= 10 * again.seconds_compute, (first.seconds_compute, again.seconds_compute)
    a, b = first.dataset, again.dataset
    np.testing.assert_array_equal(a.kl_ode.values, b.kl_ode.values)


# --------------------------------------------------------------------------- the data

def test_kl_dynamics_data(runs):
    ds = runs["kl-dynamics"].dataset
    a = ds.attrs
    kl, err = ds.kl_ode.values, ds.kl_ode_error.values
    assert _finite(kl) and _finite(err) and np.all(err >= 0)
    # the mu = 3 ODE curve has an interior minimum, resolved beyond the error bars
    assert a["ode_interior"] == 1
    i = int(np.argmin(kl))
    assert 0 < i < kl.size - 1
    assert kl[0] - kl[i] > err[0] + err[i] and kl[-1] - kl[i] > err[-1] + err[i]
    assert ds.tau.values[0] < a["ode_tau_star"] < ds.tau.values[-1]
    assert ds.tau.values[0] <= a["ode_tau_lo"] <= ds.tau.values[i] <= a["ode_tau_hi"] <= ds.tau.values[-1]
    assert a["ode_kl_star"] <= kl[i] + 1e-12 and a["ode_kl_star_error"] >= 0
    # Girsanov: the bound dominates the SDE's KL(p_tmin || p_gen) along the whole trajectory
    slack = ds.girsanov_error.values + ds.kl_sde_tmin_error.values
    assert np.all(ds.girsanov.values + slack >= ds.kl_sde_tmin.values)
    # losses: the train loss decreases along the flow; population loss finite and positive
    tr = ds.train_loss.values
    assert np.all(np.diff(tr) <= 1e-12 * np.abs(tr[:-1]))
    assert np.all(ds.population_loss.values > 0)
    # the Swish nets: KL at every checkpoint, epoch 0 = untrained (KL of the prior-like law is large)
    nk = ds.net_kl.values
    assert nk.shape[:2] == (2, 1) and _finite(nk)
    assert np.all(nk[:, :, 0] > 1.0)


def test_scaling_data(runs):
    from analysis.bounds import theory_exponents

    ds = runs["scaling"].dataset
    a = ds.attrs
    for fit in ("tau_star_vs_n", "tau_star_over_m_vs_n", "kl_star_vs_n", "kl_star_vs_m"):
        s, lo, hi = a[f"fit_{fit}_slope"], a[f"fit_{fit}_ci_low"], a[f"fit_{fit}_ci_high"]
        assert np.isfinite([s, lo, hi]).all()
        assert lo < s < hi, (fit, lo, s, hi)
    # theory exponents come from the SymPy minimisation
    th = theory_exponents()
    assert a["theory_kl_star_vs_n"] == th["kl_star_vs_n"] == pytest.approx(-0.4)
    assert a["theory_tau_star_vs_n"] == pytest.approx(0.4)
    assert a["theory_kl_star_vs_m"] == pytest.approx(-0.5)
    assert a["slide_kl_star_vs_m"] == "-4/5"
    # tau*/m differs from tau* by the width m = n exactly
    np.testing.assert_allclose(a["fit_tau_star_over_m_vs_n_slope"], a["fit_tau_star_vs_n_slope"] - 1.0)
    # KL(tau*) positive; more data and more width help at this size
    assert np.all(ds.kl_star_n.values > 0) and np.all(ds.kl_star_m.values > 0)
    assert ds.kl_star_n.values[-1].mean() < ds.kl_star_n.values[0].mean()
    assert ds.kl_star_m.values[-1].mean() < ds.kl_star_m.values[0].mean()
    # the bound curve is drawn with a fitted constant: it passes through the data on average
    ratio = ds.kl_star_n.values.mean(axis=1) / ds.bound_kl_star_n.values
    assert np.exp(np.mean(np.log(ratio))) == pytest.approx(1.0, rel=1e-9)


def test_modes_shift_data(runs):
    ds = runs["modes-shift"].dataset
    assert list(ds.main_mu.values) == [3.0, 15.0]
    # plot ranges of the paper
    for a, r in ((0, 10.0), (1, 30.0)):
        z = ds.z.values[a]
        z = z[np.isfinite(z)]
        assert z[0] == pytest.approx(-r) and z[-1] == pytest.approx(r)
        h = z[1] - z[0]
        assert np.all(ds.density_rf.values[a][:, : z.size] >= 0)
        assert ds.p0.values[a][: z.size].sum() * h == pytest.approx(1.0, abs=1e-6)
    # generated densities are densities: once trained (tau >= tau*), mass 1 on the fine KL grid
    # (means +- 8 sd) for mu = 3 (for mu = 15 the tiny model's spikes are narrower than the
    # grid: only checked finite); untrained, the flow of a zero score spreads the prior far out
    assert _finite(ds.pgen_mass.values)
    i = list(ds.mu.values).index(3.0)
    late = ds.tau.values >= ds.tau_star.values[i]
    np.testing.assert_allclose(ds.pgen_mass.values[i, late], 1.0, atol=0.05)
    assert np.all(ds.pgen_mass.values[:, 0] < 0.5)
    mass = ds.mass_left.values
    assert np.all((mass >= 0) & (mass <= 1))
    assert np.all(ds.n_modes.values >= 1)
    # the verdict on the paper's observation is recorded, with its parts
    for k in ("rf_verdict_best_earlier", "rf_verdict_collapse_mu15", "rf_verdict_degrades_mu15",
              "rf_verdict_paper_observation_holds"):
        assert ds.attrs[k] in (0, 1)
    assert _finite(ds.kl_ode.values) and np.all(ds.tau_star.values > 0)
    assert np.all((ds.tau_lo.values <= ds.tau_hi.values) & (ds.tau_lo.values > 0))
    r3, r15 = (ds.sel(mu=m) for m in (3.0, 15.0))
    assert ds.attrs["rf_verdict_best_earlier"] == int(float(r15.tau_hi) < float(r3.tau_lo))


def test_width_data(runs):
    ds = runs["width"].dataset
    assert list(ds.m.values) == [2, 8, 32, 128]
    ks = ds.kl_star.values.mean(axis=1)
    assert np.all(np.diff(ks) < 0)        # wider is better at the early-stopping point
    assert _finite(ds.kl_at_fixed_tau.values)
    f = ds.first_tau_below_level.values
    assert np.all(np.isnan(f) | (f > 0))


def test_memorization_time_data(runs):
    ds = runs["memorization-time"].dataset
    a = ds.attrs
    assert a["m"] > ds.n.values.max()
    for name in ("tau_gen", "tau_mem"):
        s, lo, hi = (a[f"fit_{name}_vs_n_{k}"] for k in ("slope", "ci_low", "ci_high"))
        assert np.isfinite([s, lo, hi]).all() and lo < s < hi
    assert np.all(ds.tau_gen.values < ds.tau_mem.values)
    # generalization gap 0 at tau = 0, train loss below test loss at the end
    np.testing.assert_allclose(ds.gap.values[:, :, 0], 0.0, atol=1e-6)
    assert np.all(ds.gap.values[:, :, -1] > 0)
    f = ds.mem_fraction.values
    assert np.all((f >= 0) & (f <= 1))
    assert np.all(ds.mem_fraction_empirical_score.values > 0.5)   # the empirical score memorizes
    sp = ds.spectrum.values[0, 0]
    assert np.all(sp[np.isfinite(sp)] >= 0)


# --------------------------------------------------------------------------- helpers and entry points

def test_density_on_grid_matches_log_density_ode():
    """The batched plot densities agree with rfdiff.log_density_ode, one score at a time."""
    from analysis.experiments._common import density_on_grid, rf_flow
    import rfdiff as rf
    from rfdiff import log_density_ode, two_modes

    target = two_modes(3.0)
    flow, _, _ = rf_flow(target, 100, 64, n_time=16)
    taus = np.array([1e4, 1e8])
    z = np.linspace(-8, 8, 801)
    dens = density_on_grid(rf.model.make_batch(model=flow.model, A=flow.params(taus)), z, atol=1e-6)
    for b, tau in enumerate(taus):
        ref = np.exp(log_density_ode(flow.score_at(float(tau)), z[::100, None], atol=1e-9))
        np.testing.assert_allclose(dens[b, ::100], ref, rtol=1e-2, atol=1e-8)
    assert dens[1].sum() * (z[1] - z[0]) == pytest.approx(1.0, abs=0.02)


def test_early_stopping_parabola():
    from analysis.experiments._common import early_stopping, first_crossing

    t = np.logspace(0, 6, 7)
    y = (np.log(t) - np.log(2e3)) ** 2 + 0.5
    es = early_stopping(t, y)
    assert es["interior"] and es["tau_star"] == pytest.approx(2e3, rel=1e-9)
    assert es["tau_lo"] == es["tau_hi"] == 1e3                  # no errors: the grid minimum alone
    # KL - 0.5 = 58, 28, 9.0, 0.48, 2.6, 15, 39: within 2 x 5 of the minimum at 1e2 .. 1e4
    wide = early_stopping(t, y, np.full(7, 5.0))
    assert (wide["tau_lo"], wide["tau_hi"]) == (1e2, 1e4) and wide["interior"]
    assert not early_stopping(t, y, np.full(7, 20.0))["interior"]   # 39 - 0.48 < 2 x 20
    mono = early_stopping(t, -np.log(t))
    assert not mono["interior"] and mono["tau_star"] == t[-1]
    assert mono["tau_lo"] == mono["tau_hi"] == t[-1]
    assert first_crossing(t, 1.0 / t, 1e-3) == pytest.approx(1e3)
    assert np.isnan(first_crossing(t, np.ones(7), 0.5))


def test_cli_and_script(runs, workdir, cache):
    from rfdiff.cli import main

    out = workdir / "cli"
    assert main(["figure", "width", "--tiny", "--out", str(out), "--cache-dir", str(cache.root)]) == 0
    assert (out / "width_tiny.png").is_file() and (out / "width_tiny.nc").is_file()
    assert main(["figure", "no-such-figure", "--tiny"]) == 2
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "width.py"), "--help"],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert res.returncode == 0 and "--full" in res.stdout


def test_snippet(runs, workdir, cache):
    path = F.write_snippet("tiny", workdir / "out", workdir / "snippet" / "README_snippet.md", cache=cache)
    text = path.read_text()
    assert "| KL(tau*) vs n (m = c n) |" in text and "(-2/5)" in text
    for name in F.FIGURES:
        assert f"{name.replace('-', '_')}_tiny.png" in text


_TIMINGS = ("seconds", "seconds_total", "seconds_compute", "cpu_seconds_compute", "provenance", "timestamp",
            "points_cached")


def test_figure_width_on_dask_writes_the_same_numbers(runs, workdir):
    """``rfdiff figure width --tiny --cluster local`` (its points on Dask workers, a fresh
    cache) writes the numbers of the in-process run, bit for bit (issue 15, must show);
    only timings differ."""
    pytest.importorskip("distributed")
    from rfdiff.cli import main

    out = workdir / "dask"
    assert main(["figure", "width", "--tiny", "--cluster", "local", "--jobs", "2", "--out", str(out),
                 "--cache-dir", str(workdir / "dask-cache")]) == 0
    a = load_dataset([p for p in runs["width"].paths if p.suffix == ".nc"][0])
    b = load_dataset(out / "width_tiny.nc")
    assert set(a.data_vars) == set(b.data_vars) and len(a.data_vars) > 5
    for v in a.data_vars:
        if v not in _TIMINGS:
            np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)
    for k, val in a.attrs.items():
        if k not in _TIMINGS:
            assert np.array_equal(np.asarray(val), np.asarray(b.attrs[k])), k
    assert a.attrs["points_total"] == b.attrs["points_total"] == 4
    assert b.attrs["points_cached"] == 0


def test_figure_help_lists_every_registered_figure(capsys):
    """The figure names in ``rfdiff figure --help`` are the registry's (they cannot drift apart)."""
    from rfdiff.cli import main
    assert main(["figure", "--help"]) == 0
    text = capsys.readouterr().out
    listed = text[text.rindex("\nfigures: ") + len("\nfigures: "):].split("\nEvery point")[0]
    assert [n.strip() for n in listed.replace("\n", " ").split(",")] == list(F.FIGURES)
