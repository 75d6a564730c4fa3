"""real-digits: pair selection on known centres, the data split, an IDX image file, the U-Net
training loss, and the tiny experiment's data against independent recomputations."""
import numpy as np
import pytest

from analysis.experiments.real_digits import (EXPERIMENT, PAIRS, digits_images, extreme_pairs, idx_images,
                                              pair_data, point, split_pairs)


def test_extreme_pairs_on_known_centres():
    # points on a line at 0, 1, 5, 5.5, 20: nearest (2, 3) at 0.5, farthest (0, 4) at 20
    c = np.array([[0.0, 0], [1, 0], [5, 0], [5.5, 0], [20, 0]])
    perm = np.array([3, 0, 4, 1, 2])                   # shuffled: indices follow the rows
    r = extreme_pairs(c[perm])
    inv = {int(p): k for k, p in enumerate(perm)}
    assert set(r["nearest"]) == {inv[2], inv[3]} and r["nearest_distance"] == pytest.approx(0.5)
    assert set(r["farthest"]) == {inv[0], inv[4]} and r["farthest_distance"] == pytest.approx(20.0)
    # brute force over random centres
    c = np.random.default_rng(3).standard_normal((10, 64))
    D = np.linalg.norm(c[:, None] - c[None], axis=-1)
    iu = np.triu_indices(10, 1)
    r = extreme_pairs(c)
    assert r["farthest_distance"] == pytest.approx(D[iu].max())
    assert D[r["nearest"]] == pytest.approx(D[iu].min())
    with pytest.raises(ValueError, match="centres"):
        extreme_pairs(np.zeros((1, 3)))


def test_digits_scaled_to_unit_interval():
    pytest.importorskip("sklearn")
    x = digits_images()
    assert x.shape == (1797, 64) and x.min() == -1.0 and x.max() == 1.0


def test_split_pairs_same_number_from_every_cluster():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2, 3, 4], [30, 12, 20, 25, 40])
    x = np.column_stack([labels, rng.standard_normal(len(labels))])     # column 0 = cluster
    pairs = {"nearest": (0, 2), "farthest": (3, 4)}                       # smallest of the four: 20
    s = split_pairs(x, labels, pairs, n_train=None, seed=1)
    assert s["n_train"] == 10 and s["n_heldout"] == 10
    for name in PAIRS:
        tr, ho = s[name]
        for part in (tr, ho):
            assert len(part) == 20
            assert sorted(np.unique(part[:, 0]).astype(int)) == sorted(pairs[name])
            assert np.all(np.bincount(part[:, 0].astype(int))[list(pairs[name])] == 10)
        assert not set(map(tuple, tr)) & set(map(tuple, ho))              # disjoint
    s7 = split_pairs(x, labels, pairs, n_train=7, seed=1)
    assert s7["n_train"] == 7 and s7["n_heldout"] == 13 and len(s7["farthest"][1]) == 26
    for bad in (0, 20, 25):
        with pytest.raises(ValueError, match="n_train must be in \\[1, 19\\]"):
            split_pairs(x, labels, pairs, n_train=bad)


def test_idx_images_and_pairs_on_constructed_clusters(tmp_path):
    """Four prototype 4x4 images at known distances (+ small noise): k-means finds them and the
    pairs are the prototypes' nearest / farthest pair."""
    pytest.importorskip("sklearn")
    from rfdiff.datasets import write_idx

    protos = np.full((4, 16), 0.0)
    protos[1, :1] = 100.0          # |p0 - p1| = 100  (nearest)
    protos[2, :4] = 100.0          # |p0 - p2| = 200, |p1 - p2| = 173
    protos[3, :] = 250.0           # |p0 - p3| = 1000 (farthest)
    rng = np.random.default_rng(0)
    lab = np.repeat(np.arange(4), 12)
    imgs = np.clip(protos[lab] + rng.integers(0, 3, (48, 16)), 0, 255).astype(np.uint8).reshape(48, 4, 4)
    path = tmp_path / "imgs.idx"
    write_idx(path, imgs)
    x, shape = idx_images(path)
    assert shape == (1, 4, 4) and x.shape == (48, 16)
    np.testing.assert_allclose(x, imgs.reshape(48, 16) / 127.5 - 1.0)
    d = pair_data(str(path), n_clusters=4, kmeans_seed=0, n_train=5)
    by_proto = {}
    for name in PAIRS:
        tr, _ = d[name]
        # which prototypes a pair's images come from: nearest to each image
        which = np.argmin(np.linalg.norm((tr[:, None] + 1) * 127.5 - protos[None], axis=-1), axis=1)
        by_proto[name] = set(which.tolist())
        assert np.all(np.bincount(which, minlength=4)[sorted(by_proto[name])] == 5)
    assert by_proto["nearest"] == {0, 1} and by_proto["farthest"] == {0, 3}
    assert d["n_heldout"] == 7
    # bad files: odd image size, wrong dtype
    write_idx(tmp_path / "odd.idx", np.zeros((3, 5, 4), np.uint8))
    with pytest.raises(ValueError, match="even height and width"):
        idx_images(tmp_path / "odd.idx")
    write_idx(tmp_path / "f.idx", np.zeros((3, 4, 4), np.float32))
    with pytest.raises(ValueError, match="dtype must be uint8"):
        idx_images(tmp_path / "f.idx")
    with pytest.raises(ValueError, match="n_clusters must be an integer"):
        pair_data(str(path), n_clusters=1)


def test_unet_training_loss_decreases_on_a_tiny_pair():
    pytest.importorskip("sklearn")
    torch = pytest.importorskip("torch")
    from rfdiff import torch as rft

    tr, _ = pair_data(None, 10, 0, 8, 0)["farthest"]                    # 16 digit images
    net = rft.UNet((1, 8, 8), channels=4, seed=0, dtype=torch.float32)
    h = rft.train(net, tr, optimizer="adam", lr=1e-2, epochs=30, batch_size=16, seed=0, progress=False)
    # at initialisation eps_hat = 0: the loss is 1/2 E|eps|^2 = d/2 = 32 (the sigma2 weighting)
    assert h.losses[0] == pytest.approx(32.0, rel=0.3)
    first, last = h.losses[:5].mean(), h.losses[-5:].mean()
    assert last < 0.4 * first, (first, last)          # measured 27.6 -> 4.0


def test_point_validates_and_is_reproducible():
    pytest.importorskip("sklearn")
    pytest.importorskip("torch")
    kw = dict(EXPERIMENT.params("tiny"))
    kw.pop("seeds")
    with pytest.raises(ValueError, match="pair must be one of"):
        point(pair="middle", seed=0, **kw)
    with pytest.raises(ValueError, match="loss_tail must be in"):
        point(pair="nearest", seed=0, **dict(kw, loss_tail=10))
    a = point(pair="nearest", seed=1, **kw)
    b = point(pair="nearest", seed=1, **kw)
    np.testing.assert_array_equal(a["loss"], b["loss"])
    np.testing.assert_array_equal(a["samples"], b["samples"])


def _mmd2_brute(x, y, bw):
    k = lambda a, b: np.exp(-np.sum((a[:, None] - b[None]) ** 2, -1) / (2 * bw * bw))  # noqa: E731
    kxx, kyy = k(x, x), k(y, y)
    n, m = len(x), len(y)
    return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * k(x, y).mean())


def test_tiny_experiment_data():
    pytest.importorskip("sklearn")
    pytest.importorskip("torch")
    from scipy.spatial.distance import pdist
    from sklearn.cluster import KMeans

    from rfdiff.run import run_serial

    p = EXPERIMENT.params("tiny")
    ds = run_serial(EXPERIMENT, "tiny")
    S = len(p["seeds"])
    assert ds.loss.shape == (2, S, p["epochs"]) and np.all(np.isfinite(ds.loss.values))
    assert ds.samples.shape == (2, S, p["grid"], 64)
    # the pairs are k-means' nearest / farthest centres, recomputed here
    x = digits_images()
    km = KMeans(n_clusters=10, n_init=10, random_state=0).fit(x)
    ref = extreme_pairs(km.cluster_centers_)
    for a, name in enumerate(PAIRS):
        assert set(ds.clusters.values[a, 0].tolist()) == set(ref[name])
        assert float(ds.centre_distance.values[a, 0]) == pytest.approx(ref[f"{name}_distance"])
    assert ref["farthest_distance"] > ref["nearest_distance"]
    # both pairs train on the same number of images; the held-out reference MMD recomputed by brute force
    assert np.all(ds.n_train.values == 2 * p["n_train"])
    d = pair_data(None, 10, 0, p["n_train"], 0)
    for a, name in enumerate(PAIRS):
        tr, ho = d[name]
        bw = float(np.median(pdist(ho)))
        assert float(ds.mmd_bandwidth.values[a, 0]) == pytest.approx(bw)
        assert float(ds.mmd_train_heldout.values[a, 0]) == pytest.approx(_mmd2_brute(tr, ho, bw), rel=1e-9)
        # the losses' final value is the tail mean of the per-epoch curve
        np.testing.assert_allclose(ds.final_loss.values[a], ds.loss.values[a, :, -p["loss_tail"]:].mean(-1))
    # reduction: mean and standard error over seeds
    np.testing.assert_allclose(ds.mmd_mean.values, ds.mmd.values.mean(1))
    np.testing.assert_allclose(ds.final_loss_sem.values, ds.final_loss.values.std(1, ddof=1) / np.sqrt(S))
    assert np.all((ds.memorization.values >= 0) & (ds.memorization.values <= 1))
    diff = float(ds.final_loss_mean.values[1] - ds.final_loss_mean.values[0])
    assert ds.attrs["final_loss_farthest_minus_nearest"] == pytest.approx(diff)
    s = EXPERIMENT.summary(ds)
    assert isinstance(s["paper's claim (farthest: higher loss and worse samples) holds, as measured"], bool)
