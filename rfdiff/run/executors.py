"""Where sweep points run: in this process, in local processes, or on a Dask cluster.

Each executor is one small object with the same interface (``slots``,
``submit``, ``wait``, ``outcome``, ``close``), so the runner has no
``if dask:`` branches and a new engine is a new class.

- :class:`SerialExecutor`: in the calling process, one point at a time (for
  debugging with pdb, and for tiny sweeps).
- :class:`LocalExecutor` (default): a ``concurrent.futures.ProcessPoolExecutor``
  with the *spawn* start method (safe with threads, numba and CUDA). A worker
  that dies (segfault, out of memory) fails its in-flight points; the pool is
  then restarted and the sweep goes on. Each worker runs a watchdog thread
  that ends the worker when its parent is gone (its parent pid changes: the
  runner was killed, even with SIGKILL), so no orphan keeps computing points
  whose results nobody receives; the resource tracker exits with the last
  worker (its pipe closes).
- :class:`DaskExecutor`: a ``dask.distributed`` client, either connected to a
  running scheduler (``--scheduler tcp://host:8786``) or on a ``LocalCluster``
  it starts (``--cluster local``). On Slurm/PBS/SGE, start a cluster with
  dask-jobqueue and point the sweep at its scheduler::

      from dask_jobqueue import SLURMCluster      # pip install dask-jobqueue
      cluster = SLURMCluster(cores=1, processes=1, memory="4GB", walltime="04:00:00")
      cluster.scale(jobs=32)
      print(cluster.scheduler_address)           # -> rfdiff sweep run cfg.toml --scheduler ...

  or pass ``client=Client(cluster)`` to :func:`rfdiff.run.run_sweep`. Workers
  need rfdiff and the experiment's module importable; results travel back to
  the submitting process, which alone writes the cache, so the cache
  directory need not be shared with the workers.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os

__all__ = ["SerialExecutor", "LocalExecutor", "DaskExecutor", "DaskUnavailable",
           "SchedulerUnavailable", "make_executor"]


class DaskUnavailable(ImportError):
    """dask.distributed is not installed."""


class SchedulerUnavailable(RuntimeError):
    """The Dask scheduler could not be reached."""


class SerialExecutor:
    """Run each point in this process when it is submitted."""

    slots = 1
    enforces_timeout = True  # the runner's SIGALRM works in the main thread

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def submit(self, fn, *args):
        fut: cf.Future = cf.Future()
        try:
            fut.set_result(fn(*args))
        except BaseException as exc:  # KeyboardInterrupt must still stop the sweep
            if not isinstance(exc, Exception):
                raise
            fut.set_exception(exc)
        return fut

    def wait(self, futures, timeout):
        return {f for f in futures if f.done()}

    def outcome(self, fut):
        return fut.result()

    def cancel(self, fut):
        pass

    def close(self):
        pass


def limit_threads(n: int) -> None:
    """Use at most ``n`` threads in this process: OpenBLAS/MKL/OpenMP pools (threadpoolctl),
    numba's pool, and torch's if it is loaded; ``OMP_NUM_THREADS`` for torch imported later."""
    import sys

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=n)          # not as a context: for the worker's lifetime
    except ImportError:
        pass
    numba = sys.modules.get("numba")
    if numba is not None:
        try:
            numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
        except (ValueError, RuntimeError):
            pass
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)


def _worker_init(parent_pid: int, threads: int | None = None, poll_s: float = 0.2) -> None:
    """Worker initializer: exit this process as soon as ``parent_pid`` is no longer its
    parent (the runner died, even by SIGKILL), and limit its threads."""
    import threading
    import time

    def watch():
        while True:
            if os.getppid() != parent_pid:
                os._exit(3)
            time.sleep(poll_s)

    threading.Thread(target=watch, name="rfdiff-parent-watchdog", daemon=True).start()
    if threads:
        limit_threads(int(threads))


class LocalExecutor:
    """A spawn-based process pool of ``workers`` processes (default: CPU count)."""

    enforces_timeout = True  # tasks run in each worker's main thread: SIGALRM works

    def __init__(self, workers: int | None = None, threads: int | None = None):
        self.slots = int(workers or os.cpu_count() or 1)
        self._threads = threads
        self._ctx = multiprocessing.get_context("spawn")
        self._pool = self._new_pool()

    def _new_pool(self):
        return cf.ProcessPoolExecutor(max_workers=self.slots, mp_context=self._ctx,
                                      initializer=_worker_init,
                                      initargs=(os.getpid(), self._threads))

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        # On an error or ^C, don't wait for the points still running.
        self.close(wait=exc_type is None)

    def submit(self, fn, *args):
        try:
            return self._pool.submit(fn, *args)
        except cf.process.BrokenProcessPool:
            # A worker died earlier; its points have failed. Start afresh.
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            return self._pool.submit(fn, *args)

    def wait(self, futures, timeout):
        done, _ = cf.wait(list(futures), timeout=timeout, return_when=cf.FIRST_COMPLETED)
        return done

    def outcome(self, fut):
        return fut.result()

    def cancel(self, fut):
        fut.cancel()

    def close(self, wait: bool = True):
        self._pool.shutdown(wait=wait, cancel_futures=True)


class DaskExecutor:
    """Submit points to a dask.distributed cluster.

    Exactly one of ``scheduler`` (an address), ``cluster="local"`` (start a
    ``LocalCluster`` of ``workers`` single-threaded processes) or ``client``
    (an existing ``distributed.Client``, not closed here) is used.
    """

    # Dask runs tasks in worker threads, where SIGALRM cannot interrupt them: the
    # runner enforces timeout_s itself, counted from submission.
    enforces_timeout = False

    def __init__(self, *, scheduler: str | None = None, cluster: str | None = None,
                 client=None, workers: int | None = None):
        try:
            import distributed
        except ImportError:
            raise DaskUnavailable("the Dask executor needs dask.distributed: "
                                  "pip install 'rfdiff[dist]'") from None
        self._distributed = distributed
        self._own_client = client is None
        self._cluster = None
        if client is not None:
            self.client = client
        elif cluster is not None:
            if cluster != "local":
                raise ValueError(f"cluster must be 'local', got {cluster!r} "
                                 "(for Slurm/PBS start a dask-jobqueue cluster and pass "
                                 "--scheduler ADDRESS)")
            import logging
            self._cluster = distributed.LocalCluster(
                n_workers=int(workers or os.cpu_count() or 1), threads_per_worker=1,
                processes=True, dashboard_address=None, silence_logs=logging.ERROR)
            self.client = distributed.Client(self._cluster)
        elif scheduler is not None:
            try:
                self.client = distributed.Client(scheduler, timeout="10s")
            except (OSError, TimeoutError, ValueError) as exc:
                raise SchedulerUnavailable(f"cannot connect to the Dask scheduler at "
                                           f"{scheduler!r} ({type(exc).__name__}: "
                                           f"{str(exc).splitlines()[0] if str(exc) else ''})"
                                           ) from None
        else:
            raise ValueError("DaskExecutor needs scheduler=, cluster='local' or client=")

    @property
    def slots(self) -> int:
        try:
            return max(1, sum(self.client.nthreads().values()))
        except Exception:  # scheduler briefly unreachable: keep going with one slot
            return 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def submit(self, fn, *args):
        return self.client.submit(fn, *args, pure=False)

    def wait(self, futures, timeout):
        futures = list(futures)
        try:
            done, _ = self._distributed.wait(futures, timeout=timeout,
                                             return_when="FIRST_COMPLETED")
        except TimeoutError:
            return set()
        return set(done)

    def outcome(self, fut):
        return fut.result()

    def cancel(self, fut):
        fut.cancel()

    def close(self):
        if self._own_client:
            self.client.close()
        if self._cluster is not None:
            self._cluster.close()


def make_executor(*, serial: bool = False, workers: int | None = None,
                  scheduler: str | None = None, cluster: str | None = None, client=None,
                  threads: int | None = None):
    """The executor the arguments ask for (Dask if any Dask argument is given)."""
    chosen = [name for name, v in (("serial", serial), ("scheduler", scheduler),
                                   ("cluster", cluster), ("client", client)) if v]
    if len(chosen) > 1:
        raise ValueError(f"choose one of serial, scheduler, cluster, client; got {', '.join(chosen)}")
    if serial:
        return SerialExecutor()
    if scheduler is not None or cluster is not None or client is not None:
        return DaskExecutor(scheduler=scheduler, cluster=cluster, client=client, workers=workers)
    return LocalExecutor(workers, threads)
