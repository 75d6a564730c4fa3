"""One way to run things: the experiment protocol, its runner, cache and executors."""
from .experiment import (PRESET_NAMES, Experiment, Task, as_dataset, point_function, registered,
                         run_params, run_serial, spec_of)

__all__ = ["PRESET_NAMES", "Experiment", "Task", "as_dataset", "point_function", "registered",
           "run_params", "run_serial", "spec_of"]
