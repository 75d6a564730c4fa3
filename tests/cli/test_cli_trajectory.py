"""``rfdiff trajectory``: a real run, and one-line errors on bad input."""
import numpy as np
import pytest

import rfdiff as rf
from rfdiff.cli import main
from rfdiff.io import load_dataset


def test_trajectory_command_writes_dataset_matching_library(tmp_path, capsys):
    out = tmp_path / "t.nc"
    png = tmp_path / "t.png"
    code = main(["trajectory", "--mu", "2", "--n", "50", "--m", "16", "--n-time", "16",
                 "--taus", "1:1e6:4", "--metrics", "train_loss,population_loss,kl_ode",
                 "--out", str(out), "--plot", str(png)])
    assert code == 0, capsys.readouterr().err
    ds = load_dataset(out)
    target = rf.two_modes(2.0)
    sm = rf.ScoreMatching(rf.RandomFeatureScore(m=16), target.sample(50, seed=0), n_time=16)
    flow = sm.flow()
    np.testing.assert_allclose(ds["train_loss"].values, flow.train_loss(ds.tau.values), rtol=1e-12)
    np.testing.assert_allclose(ds["population_loss"].values,
                               flow.population_loss(ds.tau.values, target), rtol=1e-12)
    assert np.all(np.isfinite(ds["kl_ode"].values)) and "provenance" in ds.attrs
    assert png.stat().st_size > 1000


def test_trajectory_config_file(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    out = tmp_path / "c.nc"
    cfg.write_text(f'[trajectory]\nmu = 2\nn = 40\nm = 8\nn_time = 8\ntaus = "1:100:3"\n'
                   f'metrics = ["train_loss"]\nout = "{out}"\n')
    assert main(["trajectory", "--config", str(cfg)]) == 0
    assert load_dataset(out)["train_loss"].shape == (3,)


@pytest.mark.parametrize("argv,msg", [
    (["--n", "-3"], "n must be"), (["--m", "0"], "m must be"), (["--taus", "1:2"], "taus must be"),
    (["--taus=-1:10:3"], "taus start"), (["--mu", "-1"], "mu"), (["--metrics", "nope"], "metric"),
    (["--t-min", "5", "--T", "1"], "t_min must be < T"), (["--backend", "nope"], "backend must be"),
])
def test_trajectory_bad_input_is_one_line_exit_2(argv, msg, capsys, tmp_path):
    assert main(["trajectory", "--out", str(tmp_path / "x.nc"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1


def test_trajectory_config_unknown_key(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[trajectory]\nwidth = 3\n")
    assert main(["trajectory", "--config", str(cfg)]) == 2
    assert "unknown key [trajectory].width" in capsys.readouterr().err


def test_trajectory_backend_without_gpu_is_one_line_exit_2(capsys, tmp_path):
    from rfdiff.backend import cupy_available
    if cupy_available():
        pytest.skip("a GPU is usable here")
    assert main(["trajectory", "--out", str(tmp_path / "x.nc"), "--backend", "cupy"]) == 2
    err = capsys.readouterr().err.strip()
    assert "backend" in err and len(err.splitlines()) == 1
