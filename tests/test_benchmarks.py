"""The benchmark scripts run at CI size and write their ratios (slow: minutes)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"

KEYS = {
    "kernels.py": ("gram_fraction_of_gemm", "eigh_ratio_vs_numpy", "sampler_heun_32_steps_s"),
    "flow_vs_gd.py": ("speedup", "speedup_same_rows", "torch_probe_vs_closed_form_gd", "tau_star",
                      "speedup_at_tau_star", "trajectory_gd_steps", "closed_form_trajectory_in_gd_steps"),
    "scaling.py": (),
    "trajectory.py": ("total_s", "trajectory_cost_in_gd_steps", "kl_ode_max_error"),
    "pre_memorization.py": ("assembly_s", "gemm_s", "assembly_vs_gemms"),
    "reproducibility.py": ("score_error_curve_speedup", "score_error_curve_max_rel_difference"),
    "large_lr.py": ("d1_speedup", "d10_speedup", "d1_max_grad_difference", "d10_max_grad_difference",
                    "hvp_speedup", "max_hvp_difference"),
}


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(KEYS))
def test_quick_benchmark_runs_and_reports(script, tmp_path):
    out = tmp_path / "out.json"
    subprocess.run([sys.executable, script, "--quick", "--json", str(out)], cwd=BENCH, check=True,
                   capture_output=True, text=True, timeout=1800)
    res = json.loads(out.read_text())
    assert "machine" in res
    for key in KEYS[script]:
        assert isinstance(res[key], (int, float)) and res[key] == res[key], key
    if script == "flow_vs_gd.py":
        assert res["torch_probe_vs_closed_form_gd"] < 1e-9
        assert res["gd_rel_error_at_tau_max"] <= res["eps"]
        assert 1.0 <= res["tau_star"] <= 1e14 and res["steps_needed_at_tau_star"] * res["lr_at_tau_star"] >= \
            res["tau_star"]
        assert "speedup_at_tau_star" in res["projected"]
    if script == "large_lr.py":
        assert max(res["d1_max_grad_difference"], res["d10_max_grad_difference"], res["max_hvp_difference"]) < 1e-12
    if script == "reproducibility.py":
        assert res["score_error_curve_max_rel_difference"] < 1e-8


@pytest.mark.slow
def test_gpu_check_script_runs_its_steps_on_the_cpu(tmp_path):
    """benchmarks/gpu_check.sh (the prepared device check) with BACKEND=numpy QUICK=1:
    every step runs and writes its JSON (its gpu-test step needs CuPy: skipped here)."""
    import os
    env = {**os.environ, "BACKEND": "numpy", "QUICK": "1", "OUT": str(tmp_path), "PYTHON": sys.executable}
    r = subprocess.run(["bash", str(BENCH / "gpu_check.sh")], env=env, capture_output=True, text=True,
                       timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert json.loads((tmp_path / "trajectory.json").read_text())["m"] == 512
    assert "sampler_heun_32_steps_s" in json.loads((tmp_path / "kernels.json").read_text())
