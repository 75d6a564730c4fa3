"""What an experiment function returns, and how a grid of such results becomes a Dataset.

An experiment function returns a dict of outputs, each a number, bool,
string or NumPy array (of numbers, bools or strings), plus two optional
metadata entries::

    return {
        "kl": 0.013,                      # scalar output
        "loss": loss_curve,               # array output, shape (len(taus),)
        "coords": {"tau": taus},          # 1D coordinate values of extra dimensions
        "dims": {"loss": ["tau"]},        # names of each array output's extra dimensions
    }

An array output without a ``dims`` entry gets dimensions ``<name>_dim0``,
``<name>_dim1``... Collecting a sweep stacks each output over the grid: the
variable's dimensions are the grid parameters (in config order) followed by
its own. Shapes, dimension names and coordinate values must agree between
points.
"""
from __future__ import annotations

import numpy as np

__all__ = ["normalize_result", "stack_results", "is_dataset", "dataset_result", "to_dataset"]

_META = ("coords", "dims")


def _valid_name(name) -> bool:
    return isinstance(name, str) and bool(name) and "/" not in name and not name.startswith("_")


def is_dataset(value) -> bool:
    """True for an ``xarray.Dataset`` (without importing xarray when it is not loaded)."""
    xr = __import__("sys").modules.get("xarray")
    return xr is not None and isinstance(value, xr.Dataset)


def dataset_result(ds, reserved=()) -> dict:
    """A point function's ``xarray.Dataset`` as a normalized result (attributes dropped)."""
    result = {str(k): v.values for k, v in ds.data_vars.items()}
    result["dims"] = {str(k): [str(d) for d in v.dims] for k, v in ds.data_vars.items()}
    result["coords"] = {str(k): ds[k].values for k in ds.dims if k in ds.coords}
    return normalize_result(result, reserved)


def to_dataset(normalized: dict):
    """A normalized result (:func:`normalize_result`) as an ``xarray.Dataset``: one data
    variable per output, the result's coordinates as coordinates."""
    import xarray as xr

    data = {k: (normalized["dims"][k], v) for k, v in normalized["outputs"].items()}
    return xr.Dataset(data, coords={k: (k, v) for k, v in normalized["coords"].items()})


def normalize_result(result, reserved=()) -> dict:
    """Check a result and return ``{"outputs", "dims", "coords"}`` with arrays everywhere.

    ``reserved`` are names outputs and extra dimensions may not take (the grid
    parameters). Raises TypeError/ValueError with a message naming the output.
    """
    if not isinstance(result, dict):
        raise TypeError(f"experiment functions must return a dict, got {type(result).__name__}")
    coords_in = result.get("coords", {}) or {}
    dims_in = result.get("dims", {}) or {}
    if not isinstance(coords_in, dict) or not isinstance(dims_in, dict):
        raise TypeError("result 'coords' and 'dims' must be dicts")
    outputs, dims, coords = {}, {}, {}
    for name, value in result.items():
        if name in _META:
            continue
        if not _valid_name(name):
            raise ValueError(f"output name {name!r} must be a non-empty string without '/' "
                             "that does not start with '_'")
        if name in reserved:
            raise ValueError(f"output {name!r} has the name of a grid parameter")
        arr = np.asarray(value)
        if arr.dtype.kind not in "biufU":
            raise TypeError(f"output {name!r}: values must be numbers, bools or strings, "
                            f"got dtype {arr.dtype}")
        outputs[name] = arr
        names = dims_in.get(name)
        if names is None:
            names = [f"{name}_dim{i}" for i in range(arr.ndim)]
        names = list(names)
        if len(names) != arr.ndim or not all(_valid_name(d) for d in names):
            raise ValueError(f"dims[{name!r}] = {names!r} must name each of its "
                             f"{arr.ndim} dimension(s)")
        if len(set(names)) != len(names):
            raise ValueError(f"dims[{name!r}] = {names!r} repeats a dimension")
        for d in names:
            if d in reserved:
                raise ValueError(f"output {name!r}: dimension {d!r} is a grid parameter")
        dims[name] = names
    unknown = set(dims_in) - set(outputs)
    if unknown:
        raise ValueError(f"dims given for unknown output(s): {', '.join(sorted(unknown))}")
    sizes = {}
    for name, names in dims.items():
        for d, n in zip(names, outputs[name].shape):
            if sizes.setdefault(d, n) != n:
                raise ValueError(f"dimension {d!r} has size {sizes[d]} in one output and {n} "
                                 f"in {name!r}")
    for cname, values in coords_in.items():
        arr = np.asarray(values)
        if not _valid_name(cname) or cname in reserved or cname in outputs:
            raise ValueError(f"coordinate name {cname!r} is invalid or taken")
        if arr.ndim != 1 or arr.dtype.kind not in "biufU":
            raise ValueError(f"coordinate {cname!r} must be a 1D array of numbers or strings")
        if cname in sizes and sizes[cname] != arr.shape[0]:
            raise ValueError(f"coordinate {cname!r} has {arr.shape[0]} values but dimension "
                             f"{cname!r} has size {sizes[cname]}")
        if cname not in sizes:
            raise ValueError(f"coordinate {cname!r} is not a dimension of any output")
        coords[cname] = arr
    return {"outputs": outputs, "dims": dims, "coords": coords}


def _fill(dtype: np.dtype):
    """Dtype and fill value of a stacked variable that has missing points."""
    if dtype.kind in "biuf":
        return np.dtype(np.float64) if dtype.kind != "f" else dtype, np.nan
    return dtype, ""


def stack_results(grid: dict, results: dict):
    """Stack normalized results into an ``xarray.Dataset`` over the grid.

    ``grid`` maps each grid parameter to its values (dims in order);
    ``results`` maps a grid index tuple to a normalized result (missing
    indices are filled with NaN, or "" for strings; integer and bool outputs
    then become float).
    """
    import xarray as xr

    gdims = list(grid)
    gshape = tuple(len(v) for v in grid.values())
    specs: dict[str, tuple] = {}  # name -> (dims, shape, dtype)
    coords: dict[str, np.ndarray] = {}
    first_at: dict[str, tuple] = {}
    for index, res in results.items():
        for name, arr in res["outputs"].items():
            spec = (tuple(res["dims"][name]), arr.shape)
            if name not in specs:
                specs[name] = (*spec, arr.dtype)
                first_at[name] = index
            elif specs[name][:2] != spec:
                raise ValueError(f"output {name!r} has dims/shape {specs[name][:2]} at point "
                                 f"{_at(grid, first_at[name])} but {spec} at {_at(grid, index)}")
            else:
                specs[name] = (*spec, np.result_type(specs[name][2], arr.dtype))
        for cname, values in res["coords"].items():
            if cname not in coords:
                coords[cname] = values
                first_at["coord:" + cname] = index
            elif not np.array_equal(coords[cname], values):
                raise ValueError(f"coordinate {cname!r} differs between points "
                                 f"{_at(grid, first_at['coord:' + cname])} and {_at(grid, index)}")
    complete = len(results) == int(np.prod(gshape, dtype=np.int64))
    data_vars = {}
    for name, (dims, shape, dtype) in specs.items():
        missing = not complete or any(name not in r["outputs"] for r in results.values())
        if missing:
            dtype, fill = _fill(dtype)
            data = np.full(gshape + shape, fill, dtype=dtype)
        else:
            data = np.empty(gshape + shape, dtype=dtype)
        for index, res in results.items():
            if name in res["outputs"]:
                data[index] = res["outputs"][name]
        for d in dims:
            if d in gdims:
                raise ValueError(f"output {name!r}: dimension {d!r} is a grid parameter")
        data_vars[name] = (gdims + list(dims), data)
    all_coords = {k: (k, np.asarray(v)) for k, v in grid.items()}
    all_coords.update({k: (k, v) for k, v in coords.items()})
    return xr.Dataset(data_vars, coords=all_coords)


def _at(grid: dict, index: tuple) -> str:
    return "(" + ", ".join(f"{k}={v[i]!r}" for (k, v), i in zip(grid.items(), index)) + ")"
