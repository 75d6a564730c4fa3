"""Figure ``real-digits`` (issue 20 part 1): a U-Net on real digits, nearest vs farthest clusters.

Seed 000's real-data claim: a diffusion model trained on two classes far apart has a higher
training loss and worse samples than one trained on two close classes. Here:

1. **Data.** scikit-learn's 8x8 ``load_digits`` images (pixel values 0..16 -> ``x/8 - 1``), or
   MNIST-style images from a local IDX file (``idx_images``: path of an IDX file of shape
   (n, H, W), uint8, even H and W, read by :func:`rfdiff.datasets.read_idx`; values
   ``x/127.5 - 1``). Both in [-1, 1]. Nothing is downloaded.
2. **Clusters.** k-means (``n_clusters`` K = 10, ``kmeans_seed``) on the images; with centres
   ``c_1..c_K`` and ``D_ij = |c_i - c_j|`` over i < j, the **farthest** pair ``argmax D_ij`` and
   the **nearest** pair ``argmin D_ij`` (:func:`extreme_pairs`).
3. **The same number of images from each pair.** ``s`` = the size of the smallest of the four
   clusters; from every cluster of both pairs ``n_train`` images (default ``s // 2``) are drawn
   for training and ``s - n_train`` others are held out (``data_seed``), so both pairs train on
   ``2 n_train`` images and are scored against ``2 (s - n_train)`` held-out ones.
4. **Training, the same for both pairs.** :class:`rfdiff.torch.UNet` (``channels``, float32)
   on the denoising score-matching loss of :mod:`rfdiff.torch.train` (OU process,
   ``t ~ U[t_min, T]``, ``sigma2`` weighting: the loss is ``1/2 E|eps - eps_hat|^2`` summed over
   pixels), Adam at ``lr``, ``epochs`` fixed epochs of minibatches of ``batch_size``, for every
   seed of ``seeds`` (the seed draws the net's initial weights and the minibatches/times/noises).
5. **Samples.** ``n_samples`` probability-flow samples (Heun, ``sample_steps`` steps uniform in
   log t from T to t_min, :func:`rfdiff.samplers.heun`) from prior noise (``seed``).
6. **Quality.** The memorization fraction (nearest / second-nearest training image distance
   below 1/3, :func:`rfdiff.metrics.memorization_fraction`, binomial error) against the pair's
   training images, and the unbiased Gaussian-kernel ``MMD^2`` (:func:`rfdiff.metrics.mmd`,
   influence-function standard error) of the samples to the pair's held-out images, at the
   bandwidth = median pairwise distance of the held-out images. Reference:
   ``mmd_train_heldout``, the same MMD^2 of the training images themselves (what a generator
   that returned the training set would score).

Reduction: mean and standard error over seeds (ddof = 1) of the final training loss (mean
over the last ``loss_tail`` epochs), the MMD^2 and the memorization fraction; the claim's
two parts are read as "beyond errors": difference of the means larger than twice the
combined standard error.
"""
from __future__ import annotations

import functools
import time

import numpy as np

from rfdiff.run import Experiment, Task, point_function

from . import _common as c

NAME = "real-digits"
TITLE = "A U-Net on real digits: nearest vs farthest pair of clusters"
PAIRS = ("nearest", "farthest")

_BASE = dict(idx_images=None, n_clusters=10, kmeans_seed=0, data_seed=0, n_train=None,
             t_min=1e-3, T=8.0, lr=2e-3, n_samples=256, sample_steps=64, loss_tail=10, grid=16)

PRESETS = {
    # tiny: seconds, for the tests: a 4-channel net, 10 images per cluster, 3 epochs
    "tiny": dict(_BASE, n_train=10, channels=4, epochs=3, batch_size=10, seeds=[0, 1, 2],
                 n_samples=32, sample_steps=8, loss_tail=1, grid=4),
    # quick: the README figure, minutes on 2 cores
    "quick": dict(_BASE, n_train=40, channels=16, epochs=150, batch_size=32, seeds=[0, 1, 2]),
    # full: half of the smallest cluster for training, a wider net, 5 seeds, longer training
    "full": dict(_BASE, channels=32, epochs=1000, batch_size=32, seeds=[0, 1, 2, 3, 4], n_samples=512,
                 sample_steps=128, loss_tail=50),
}


def digits_images() -> np.ndarray:
    """``load_digits`` images, (1797, 64), scaled to [-1, 1]."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:                      # pragma: no cover - depends on the install
        raise ImportError("real-digits needs scikit-learn: pip install scikit-learn") from exc
    return load_digits().data.astype(np.float64) / 8.0 - 1.0


def idx_images(path) -> tuple:
    """Images of the IDX file ``path`` (n, H, W) uint8 -> ``(x / 127.5 - 1`` flattened (n, H*W),
    ``(1, H, W))``; ValueError for a bad file (rfdiff.datasets) or odd H, W (the U-Net halves them)."""
    from rfdiff.datasets import read_idx

    a = read_idx(path, shape=(None, None, None), dtype=np.uint8)
    n, H, W = a.shape
    if n < 2 or H % 2 or W % 2:
        raise ValueError(f"idx_images: need n >= 2 images of even height and width, {path} holds {a.shape}")
    return a.reshape(n, H * W).astype(np.float64) / 127.5 - 1.0, (1, H, W)


def extreme_pairs(centres) -> dict:
    """Farthest and nearest pair of ``centres`` (K, d), K >= 2 (module docstring)."""
    from scipy.spatial.distance import pdist

    c_ = np.asarray(centres, dtype=float)
    if c_.ndim != 2 or len(c_) < 2 or not np.all(np.isfinite(c_)):
        raise ValueError(f"centres must be a finite (K, d) array with K >= 2, got shape {np.shape(centres)}")
    dist = pdist(c_)
    i, j = np.triu_indices(len(c_), k=1)                # pdist's pair order
    far, near = int(np.argmax(dist)), int(np.argmin(dist))
    return {"farthest": (int(i[far]), int(j[far])), "nearest": (int(i[near]), int(j[near])),
            "farthest_distance": float(dist[far]), "nearest_distance": float(dist[near])}


def split_pairs(x, labels, pairs: dict, n_train=None, seed: int = 0) -> dict:
    """Training and held-out images of each pair (module docstring, step 3).

    ``labels`` the cluster of each row of ``x``; ``pairs`` ``{"nearest": (i, j), "farthest": (k, l)}``.
    Returns ``{pair: (train, heldout)}`` and ``"n_train"``, ``"n_heldout"`` (per cluster).
    """
    labels = np.asarray(labels)
    clusters = [k for name in PAIRS for k in pairs[name]]
    smallest = min(int(np.sum(labels == k)) for k in clusters)
    n_tr = smallest // 2 if n_train is None else int(n_train)
    if n_tr < 1 or smallest - n_tr < 1:
        raise ValueError(f"n_train must be in [1, {smallest - 1}] (the smallest of the four clusters holds "
                         f"{smallest} images), got {n_train}")
    rng = np.random.default_rng(seed)
    out = {"n_train": n_tr, "n_heldout": smallest - n_tr}
    for name in PAIRS:
        tr, ho = [], []
        for k in pairs[name]:
            rows = rng.permutation(np.flatnonzero(labels == k))[:smallest]
            tr.append(x[rows[:n_tr]])
            ho.append(x[rows[n_tr:]])
        out[name] = (np.concatenate(tr), np.concatenate(ho))
    return out


@functools.lru_cache(maxsize=4)
def pair_data(idx_images_path=None, n_clusters: int = 10, kmeans_seed: int = 0, n_train=None,
              data_seed: int = 0) -> dict:
    """Steps 1-3 of the module docstring: images, k-means, the two pairs and their splits
    (cached: every point of an experiment shares them)."""
    from sklearn.cluster import KMeans

    if idx_images_path is None:
        x, shape = digits_images(), (1, 8, 8)
    else:
        x, shape = idx_images(idx_images_path)
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)) or not \
            2 <= n_clusters <= len(x):
        raise ValueError(f"n_clusters must be an integer in [2, {len(x)}], got {n_clusters!r}")
    km = KMeans(n_clusters=int(n_clusters), n_init=10, random_state=int(kmeans_seed)).fit(x)
    pairs = extreme_pairs(km.cluster_centers_)
    out = split_pairs(x, km.labels_, pairs, n_train, data_seed)
    out.update(pairs=pairs, image_shape=shape, cluster_sizes=np.bincount(km.labels_, minlength=n_clusters))
    return out


def _interleaved(n, k):
    """``k`` row indices alternating between the two clusters' halves of ``n`` rows."""
    half = n // 2
    return np.ravel(np.column_stack([np.arange(half), half + np.arange(half)]))[:k]


def _epoch_means(losses, epochs):
    return np.array([b.mean() for b in np.array_split(np.asarray(losses), epochs)])


@point_function
def point(*, pair: str, seed: int, epochs: int, channels: int, batch_size: int, lr: float,
          idx_images=None, n_clusters: int = 10, kmeans_seed: int = 0, data_seed: int = 0, n_train=None,
          t_min: float = 1e-3, T: float = 8.0, n_samples: int = 256, sample_steps: int = 64,
          loss_tail: int = 10, grid: int = 16) -> dict:
    """Train the U-Net on one pair (``"nearest"`` or ``"farthest"``) with one seed; the loss per
    epoch, ``grid`` samples, the memorization fraction and the MMD^2 to held-out images."""
    import torch

    from rfdiff import metrics, samplers
    from rfdiff import torch as rft

    if pair not in PAIRS:
        raise ValueError(f"pair must be one of {PAIRS}, got {pair!r}")
    for name, val in (("epochs", epochs), ("loss_tail", loss_tail)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {val!r}")
    if loss_tail > epochs:
        raise ValueError(f"loss_tail must be in [1, epochs = {epochs}], got {loss_tail}")
    t1 = time.perf_counter()
    data = pair_data(idx_images, n_clusters, kmeans_seed, n_train, data_seed)
    train_x, held = data[pair]
    i, j = data["pairs"][pair]
    net = rft.UNet(data["image_shape"], channels=channels, seed=seed, dtype=torch.float32)
    h = rft.train(net, train_x, t_min=t_min, T=T, optimizer="adam", lr=lr, epochs=epochs,
                  batch_size=batch_size, seed=seed, checkpoint_epochs=[epochs], progress=False)
    loss = _epoch_means(h.losses, epochs)
    score = h.score_at(int(h.steps[-1]), dtype=torch.float32)
    ts = samplers.time_schedule(T=T, t_min=t_min, n_steps=sample_steps)
    x_T = samplers.prior_noise(n_samples, train_x.shape[1], seed=seed)
    xs = samplers.heun(score, x_T, ts)
    from scipy.spatial.distance import pdist
    bw = float(np.median(pdist(held)))
    mem = metrics.memorization_fraction(xs, train_x)
    dist = metrics.mmd(xs, held, bandwidth=bw)
    ref = metrics.mmd(train_x, held, bandwidth=bw)
    return {"loss": loss, "final_loss": float(loss[-loss_tail:].mean()),
            "samples": xs[:grid], "train_images": train_x[_interleaved(len(train_x), grid)],
            "memorization": mem.value, "memorization_error": mem.error,
            "mmd": dist.value, "mmd_error": dist.error, "mmd_train_heldout": ref.value,
            "mmd_train_heldout_error": ref.error, "mmd_bandwidth": bw,
            "sample_range_outside": float(np.mean(np.abs(xs) > 1.5)),
            "clusters": np.array([i, j]), "centre_distance": data["pairs"][f"{pair}_distance"],
            "n_train": len(train_x), "n_heldout": len(held), "seconds": time.perf_counter() - t1,
            "coords": {"epoch": np.arange(1, epochs + 1)},
            "dims": {"loss": ["epoch"], "samples": ["grid_index", "pixel"],
                     "train_images": ["grid_index", "pixel"], "clusters": ["member"]}}


_POINT_KEYS = ("epochs", "channels", "batch_size", "lr", "idx_images", "n_clusters", "kmeans_seed",
               "data_seed", "n_train", "t_min", "T", "n_samples", "sample_steps", "loss_tail", "grid")


def tasks(p: dict) -> list:
    """One point per (pair, seed)."""
    common = {k: p[k] for k in _POINT_KEYS}
    return [Task(point, dict(common, pair=pair, seed=int(s))) for pair in PAIRS for s in p["seeds"]]


def _sem(a):
    a = np.asarray(a, float)
    return float(np.std(a, ddof=1) / np.sqrt(len(a))) if len(a) > 1 else np.nan


def reduce(p: dict, results: list):
    """Stack over (pair, seed); per pair the mean and standard error over seeds; attrs: the claim."""
    import xarray as xr

    seeds = list(p["seeds"])
    keep = ("loss", "final_loss", "samples", "train_images", "memorization", "memorization_error", "mmd",
            "mmd_error", "mmd_train_heldout", "mmd_train_heldout_error", "mmd_bandwidth",
            "sample_range_outside", "clusters", "centre_distance", "n_train", "n_heldout", "seconds")
    grid = [[results[a * len(seeds) + b][list(keep)] for b in range(len(seeds))] for a in range(len(PAIRS))]
    ds = xr.combine_nested(grid, concat_dim=["pair", "seed"], combine_attrs="drop")
    ds = ds.assign_coords(pair=list(PAIRS), seed=seeds).transpose("pair", "seed", ...)
    for k in ("final_loss", "mmd", "memorization"):
        ds[f"{k}_mean"] = ("pair", ds[k].mean("seed").values)
        ds[f"{k}_sem"] = ("pair", np.array([_sem(ds[k].values[a]) for a in range(len(PAIRS))]))
    attrs = {"data": "sklearn load_digits 8x8" if p["idx_images"] is None else
             f"IDX images {p['idx_images']}", "image_shape": list(pair_data(
                 p["idx_images"], p["n_clusters"], p["kmeans_seed"], p["n_train"], p["data_seed"])["image_shape"]),
             "n_clusters": p["n_clusters"], "epochs": p["epochs"], "channels": p["channels"], "lr": p["lr"],
             "batch_size": p["batch_size"], "n_seeds": len(seeds), "loss_tail": p["loss_tail"], "sampler":
             f"probability-flow ODE, Heun, {p['sample_steps']} log-t steps, t in [{p['t_min']}, {p['T']}]",
             "seconds_total": float(ds.seconds.sum())}
    for k in ("final_loss", "mmd"):
        diff, se = _difference(ds, k)
        attrs[f"{k}_farthest_minus_nearest"] = diff
        attrs[f"{k}_difference_se"] = se
        attrs[f"{k}_farthest_higher"] = bool(diff > 2 * se)
        attrs[f"{k}_farthest_lower"] = bool(diff < -2 * se)
    attrs["claim_holds"] = bool(attrs["final_loss_farthest_higher"] and attrs["mmd_farthest_higher"])
    ds.attrs.update(c.netcdf_attrs(attrs))
    return ds


def _difference(ds, k):
    """Farthest minus nearest of the seed means of ``k``, and its standard error."""
    a, b = PAIRS.index("farthest"), PAIRS.index("nearest")
    m, s = ds[f"{k}_mean"].values, ds[f"{k}_sem"].values
    return float(m[a] - m[b]), float(np.hypot(s[a], s[b]))


def _verdict(ds, k):
    if ds.attrs[f"{k}_farthest_higher"]:
        return "farthest higher"
    if ds.attrs[f"{k}_farthest_lower"]:
        return "farthest LOWER"
    return "no difference beyond 2 se"


def summary(ds) -> dict:
    out = {}
    for a, pair in enumerate(PAIRS):
        out[f"{pair} pair (clusters {ds.clusters.values[a, 0].tolist()}, centre distance "
            f"{float(ds.centre_distance.values[a, 0]):.3g}): final loss, MMD^2, memorization (mean +- se)"] = (
            f"{float(ds.final_loss_mean[a]):.4g} +- {float(ds.final_loss_sem[a]):.2g}",
            f"{float(ds.mmd_mean[a]):.3g} +- {float(ds.mmd_sem[a]):.2g}",
            f"{float(ds.memorization_mean[a]):.3g} +- {float(ds.memorization_sem[a]):.2g}")
        out[f"{pair}: MMD^2 of the training images to the held-out ones (reference)"] = round(
            float(ds.mmd_train_heldout.values[a].mean()), 5)
    out["training loss"] = _verdict(ds, "final_loss")
    out["sample MMD^2"] = _verdict(ds, "mmd")
    out["paper's claim (farthest: higher loss and worse samples) holds, as measured"] = bool(ds.attrs["claim_holds"])
    return out


def _tiles(images, shape, ncol):
    """``(k, C*H*W)`` images as one ``(rows*H, ncol*W)`` mosaic (first channel)."""
    _, H, W = shape
    k = len(images)
    rows = -(-k // ncol)
    out = np.full((rows * (H + 1) - 1, ncol * (W + 1) - 1), np.nan)
    for n, im in enumerate(np.asarray(images).reshape(k, -1, H, W)[:, 0]):
        r, q = divmod(n, ncol)
        out[r * (H + 1):r * (H + 1) + H, q * (W + 1):q * (W + 1) + W] = im
    return out


def plot(ds, stem):
    from .. import plotting as P

    shape = tuple(int(s) for s in np.atleast_1d(ds.attrs["image_shape"]))
    with P.style() as plt:
        fig = plt.figure(figsize=(P.TEXT_WIDTH, 4.6), constrained_layout=True)
        gs = fig.add_gridspec(2, 4)
        ax = fig.add_subplot(gs[0, :2])
        ep = ds.epoch.values
        for a, pair in enumerate(PAIRS):
            y = ds.loss.values[a]
            P.band(ax, ep, y.mean(0), y.min(0), y.max(0), label=f"{pair} pair {ds.clusters.values[a, 0].tolist()}, "
                   f"|c_i - c_j| = {float(ds.centre_distance.values[a, 0]):.2f}", color=P.COLORS[a])
        ax.set(yscale="log", xlabel="epoch", ylabel="training loss (DSM, per epoch)")
        ax.set_title(f"(a) training loss, {ds.attrs['n_seeds']} seeds (mean, min-max),\n"
                     f"{ds.attrs['epochs']} epochs, {int(ds.n_train.values[0, 0])} images per pair",
                     loc="left", fontsize=8)
        ax.legend()
        axb = [fig.add_subplot(gs[0, 2]), fig.add_subplot(gs[0, 3])]
        ax = axb[0]
        xk = np.arange(len(PAIRS))
        ax.bar(xk, ds.final_loss_mean.values, yerr=ds.final_loss_sem.values, color=P.COLORS[:2], capsize=3)
        ax.set_xticks(xk, list(PAIRS))
        ax.set(ylabel="final training loss")
        ax.set_title(f"(b) last {ds.attrs['loss_tail']} epochs, $\\pm$ se", loc="left", fontsize=8)
        ax = axb[1]
        w = 0.38
        ax.bar(xk - w / 2, ds.mmd_mean.values, w, yerr=ds.mmd_sem.values, color=P.COLORS[:2], capsize=3,
               label=r"samples")
        ax.bar(xk + w / 2, ds.mmd_train_heldout.mean("seed").values, w, color="0.7", label="training set")
        ax2 = ax.twinx()
        ax2.errorbar(xk, ds.memorization_mean.values, yerr=ds.memorization_sem.values, fmt="k*", capsize=3,
                     label="memorized")
        ax2.set_ylim(0, 1)
        ax2.set_ylabel("memorized fraction ($\\star$)")
        ax.set_xticks(xk, list(PAIRS))
        ax.set(ylabel=r"MMD$^2$ to held-out images")
        ax.set_title("(c) sample quality", loc="left", fontsize=8)
        ax.legend(loc="upper left")
        ncol = int(np.ceil(np.sqrt(ds.sizes["grid_index"])))
        for a, pair in enumerate(PAIRS):
            for q, (var, what) in enumerate((("train_images", "training"), ("samples", "samples (seed 0)"))):
                ax = fig.add_subplot(gs[1, 2 * a + q])
                ax.imshow(_tiles(ds[var].values[a, 0], shape, ncol), cmap="gray_r", vmin=-1, vmax=1,
                          interpolation="nearest")
                ax.set_axis_off()
                ax.set_title(f"({chr(100 + 2 * a + q)}) {pair}: {what}", loc="left", fontsize=6.5)
        fig.suptitle(f"real-digits ({ds.attrs['data']}), farthest vs nearest pair: training loss "
                     f"{_verdict(ds, 'final_loss')}; sample MMD$^2$ {_verdict(ds, 'mmd')};\nthe paper's claim "
                     f"(both higher) holds as measured: {'yes' if ds.attrs['claim_holds'] else 'no'}", fontsize=7.5)
        return P.save_figure(fig, ds, stem)


EXPERIMENT = Experiment(name=NAME, title=TITLE, presets=PRESETS, tasks=tasks, reduce=reduce, plot=plot,
                        summary=summary,
                        regime="real data: 8x8 digits (d = 64) in [-1, 1], k-means K = 10, a small U-Net "
                               "trained by Adam on the denoising loss (OU, t in [1e-3, 8]); tens of images per "
                               "cluster, so the nets can memorize")
