"""The README snippet: figure list, exponent table and headline numbers, written
from the datasets of a real run (``rfdiff figures --snippet PATH``; the datasets
come from :func:`analysis.figures.write_snippet`, so this module imports no runner)."""
from __future__ import annotations

import os
from pathlib import Path


def write_snippet(preset, out, path, *, datasets: dict, docs: dict, wall_seconds=None,
                  image_dir=None) -> Path:
    """A markdown snippet for the README: the figure list (``docs``: figure name -> first
    docstring line) and the exponent table of ``scaling`` and ``memorization-time``
    (``datasets``: figure name -> dataset). Images are linked as
    ``<image_dir>/<stem>.png`` (default: ``out`` as given, i.e. relative to the
    directory the command runs in, the repository root for the README)."""
    import numpy as np

    path = Path(path)
    rel = Path(image_dir if image_dir is not None else out).as_posix()
    lines = [f"### Figures (`rfdiff figures --{preset}`)", ""]
    if wall_seconds is not None:
        import platform
        lines += [f"Made in {wall_seconds:.0f} s wall on {os.cpu_count()} CPU cores ({platform.machine()}); "
                  "a rerun reads every figure from the cache.", ""]
    for name, doc in docs.items():
        stem = name.replace("-", "_") + ("" if preset == "quick" else f"_{preset}")
        lines += [f"**{name}** — {doc.split(': ', 1)[-1]}", "",
                  f"![{name}]({rel}/{stem}.png)", ""]
    ds = datasets["scaling"]
    from analysis.experiments.scaling import exponent_table

    lines += ["#### Measured exponents vs theory", "",
              "| quantity | measured slope [95% bootstrap CI] | bound, minimised in SymPy | slide (seed 000) "
              "| bound's exponent in the CI? |",
              "|---|---|---|---|---|"]
    for r in exponent_table(ds):
        inside = "yes" if r["ci_low"] <= r["theory_bound"] <= r["ci_high"] else "**no**"
        lines.append(f"| {r['quantity']} | {r['slope']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}] | "
                     f"{_frac(r['theory_bound'])} | {r['slide']} | {inside} |")
    dm = datasets["memorization-time"]
    a = dm.attrs
    for name, th, what in (("tau_gen", 0.0, "half-descent"), ("tau_mem", 1.0, "half-rise"),
                           ("tau_min", None, "argmin")):
        s, lo, hi = (a[f"fit_{name}_vs_n_{k}"] for k in ("slope", "ci_low", "ci_high"))
        cell = f"{s:.2f} [{lo:.2f}, {hi:.2f}]" if np.isfinite(s) else "n/a (no rise on the grid)"
        ref = "—" if th is None else f"{th:g} (Bonnaire et al. 2025)"
        inside = "—" if th is None or not np.isfinite(s) else ("yes" if lo <= th <= hi else "**no**")
        lines.append(f"| {name} ({what} of the population loss) vs n, one noise level t = {a['t_level']:g} "
                     f"| {cell} | — | {ref} | {inside} |")
    lines += ["", "The bound bounds KL from above: a KL decaying faster than n^(-2/5) is consistent with "
              "it. Its tau_es ~ n^(2/5) minimises the bound, it is not a statement about the minimiser "
              "of the actual KL; the measured tau* grows much faster, in either time unit.", ""]
    lines += _headlines(datasets)
    lines += ["", "Seeds per point, sizes and every setting are in the `.nc` files' `provenance` "
              "attribute (next to each PNG, with the PDF).", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    from rfdiff.io import atomic_path
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(lines), encoding="utf-8")
    return path


def _headlines(datasets) -> list[str]:
    """A few numbers of kl-dynamics and modes-shift for the README."""
    out = ["#### Headline numbers", ""]
    ds = datasets["kl-dynamics"]
    a = ds.attrs
    out.append(f"- kl-dynamics (RF, m = {a['model_m']}, n = {a['score_matching_n']}, mu = 3): "
               f"tau* = {a['ode_tau_star']:.3g} (KL within its errors of the minimum for tau in "
               f"[{a['ode_tau_lo']:.3g}, {a['ode_tau_hi']:.3g}]), KL_ODE(tau*) = {a['ode_kl_star']:.4f} "
               f"+- {a['ode_kl_star_error']:.4f} (interior minimum: {'yes' if a['ode_interior'] else 'no'}; "
               f"KL at the last tau {a['ode_kl_final']:.3g}); SDE KL minimum {a['sde_kl_star']:.4f} "
               f"(interior: {'yes' if a['sde_interior'] else 'no'}).")
    for opt in ds.optimizer.values:
        out.append(f"- Swish net, {opt}: lowest mean KL {a[f'net_best_kl_{opt}']:.3f} at epoch "
                   f"{a[f'net_best_epoch_{opt}']} of {int(ds.epoch.values.max())} (3 seeds).")
    dm = datasets["modes-shift"]
    b = dm.attrs
    if "rf_verdict_paper_observation_holds" in b:
        r3, r15 = (dm.sel(mu=m) for m in (3.0, 15.0))
        rng = lambda r: f"{float(r.tau_star):.3g} [{float(r.tau_lo):.3g}, {float(r.tau_hi):.3g}]"  # noqa: E731
        out.append(f"- modes-shift, RF flow: tau*(mu=15) = {rng(r15)} vs tau*(mu=3) = {rng(r3)} "
                   f"(in brackets: KL within its errors of the minimum); late KL / best KL for mu = 15: "
                   f"{float(r15.kl_ode[-1]):.3g} / {float(r15.kl_star):.3g}; modes at the end: "
                   f"{b['rf_verdict_late_n_modes_mu15']}, lighter side's mass {b['rf_verdict_late_lighter_mass_mu15']:.2f}. "
                   f"Paper's observation (best early, then collapse to one mode) holds: "
                   f"{'yes' if b['rf_verdict_paper_observation_holds'] else '**no**'}.")
    for k, v in b.items():
        if k.startswith("net_verdict_") and k.endswith("paper_observation_holds"):
            opt = k[len("net_verdict_"):].split("_")[0]
            out.append(f"- modes-shift, Swish ({opt}): observation holds: {'yes' if v else '**no**'} "
                       f"(best epoch mu=15: {b.get(f'net_verdict_{opt}_best_epoch_mu15')}, mu=3: "
                       f"{b.get(f'net_verdict_{opt}_best_epoch_mu3')}).")
        elif k.startswith("net_verdict_") and k.endswith("_note"):
            opt = k[len("net_verdict_"):].split("_")[0]
            out.append(f"- modes-shift, Swish ({opt}, not tuned): {v}")
    return out


def _frac(x) -> str:
    from fractions import Fraction

    f = Fraction(float(x)).limit_denominator(20)
    return f"{float(x):+.3g} ({f})"
