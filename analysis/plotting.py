"""Shared figure style and writers for the paper figures.

One style for every figure: single-column width (3.4 in), 8 pt text, thin
lines, log axes where the theory is a power law. :func:`save_figure` writes the
PNG and the PDF of a figure and the netCDF file of the numbers behind it (with
provenance), side by side: ``<stem>.png``, ``<stem>.pdf``, ``<stem>.nc``.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

#: single-column width of a two-column paper, inches
COLUMN_WIDTH = 3.4
#: full text width, inches
TEXT_WIDTH = 7.0

RC = {
    "font.size": 8,
    "axes.labelsize": 8,
    "axes.titlesize": 8,
    "legend.fontsize": 6.5,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "lines.linewidth": 1.1,
    "lines.markersize": 3,
    "axes.linewidth": 0.6,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "legend.frameon": False,
    "legend.handlelength": 1.6,
    "figure.dpi": 100,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02,
    "pdf.fonttype": 42,
    "axes.prop_cycle": None,  # filled in by style()
}

#: colour-blind-safe cycle (Okabe-Ito)
COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]


def _mpl():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return matplotlib, plt


@contextlib.contextmanager
def style():
    """Context in which figures get the shared rcParams (Agg backend)."""
    matplotlib, plt = _mpl()
    from cycler import cycler

    rc = dict(RC)
    rc["axes.prop_cycle"] = cycler(color=COLORS)
    with matplotlib.rc_context(rc):
        yield plt


def subplots(nrows=1, ncols=1, *, width=COLUMN_WIDTH, height=None, **kw):
    """``plt.subplots`` at paper size (call inside :func:`style`)."""
    _, plt = _mpl()
    if height is None:
        height = 2.3 * nrows * (COLUMN_WIDTH / width) ** 0 if ncols > 1 else 2.3 * nrows
    kw.setdefault("constrained_layout", True)
    return plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False, **kw)


def band(ax, x, mid, lo, hi, *, label=None, color=None, marker=None, alpha=0.25, **kw):
    """A line with a shaded band between ``lo`` and ``hi`` (e.g. error bars or seeds)."""
    line, = ax.plot(x, mid, label=label, color=color, marker=marker, **kw)
    ax.fill_between(x, lo, hi, color=line.get_color(), alpha=alpha, linewidth=0)
    return line


def positive(y, floor=None):
    """Clip values to a positive floor for log axes (KL estimates near 0 can dip below)."""
    y = np.asarray(y, dtype=float)
    if floor is None:
        pos = y[np.isfinite(y) & (y > 0)]
        floor = pos.min() * 0.5 if pos.size else 1e-12
    return np.where(np.isfinite(y), np.maximum(y, floor), np.nan)


def label_panels(axes, x=-0.02, y=1.02):
    """(a), (b), ... in the top-left corner of each axis."""
    for i, ax in enumerate(np.ravel(axes)):
        ax.text(x, y, f"({chr(97 + i)})", transform=ax.transAxes, ha="right", va="bottom",
                fontsize=8, fontweight="bold")


def fit_label(fit, theory=None, name="slope"):
    """``slope 0.41 [0.35, 0.47] (theory 2/5)`` for a legend."""
    s = f"{name} {fit['slope']:.2f} [{fit['ci_low']:.2f}, {fit['ci_high']:.2f}]"
    if theory is not None:
        s += f" (theory {theory})"
    return s


def save_figure(fig, ds, stem) -> list[Path]:
    """Write ``<stem>.png``, ``<stem>.pdf`` and ``<stem>.nc`` (the dataset; it
    should already carry its provenance); close the figure; return the paths."""
    _, plt = _mpl()
    from rfdiff.io import save_dataset

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        p = stem.with_suffix(f".{ext}")
        fig.savefig(p)
        paths.append(p)
    plt.close(fig)
    if ds is not None:
        paths.append(save_dataset(ds, stem.with_suffix(".nc")))
    return paths


def data_ticks(ax, values, axis="x"):
    """Major ticks at the sampled values (e.g. n = 32, 64, ...), plain labels, no minor
    labels: readable log axes over one or two decades."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    values = np.asarray(values, dtype=float)
    a = ax.xaxis if axis == "x" else ax.yaxis
    a.set_major_locator(FixedLocator(values))
    a.set_minor_locator(NullLocator())
    a.set_minor_formatter(NullFormatter())
    labels = [f"{v:g}" if v < 1e5 else f"{v:.0e}" for v in values]
    (ax.set_xticklabels if axis == "x" else ax.set_yticklabels)(labels)
