"""Executors of trial tasks: local processes (one thread each): forked workers or joblib (loky); dask."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from collections.abc import Callable

from ..errors import ConfigError, install_hint


# --------------------------------------------------------------------------------------------
# task functions (run in worker processes: they reload the dataset and embeddings by path)
# --------------------------------------------------------------------------------------------
def one_thread() -> None:
    """Pin BLAS and OpenMP to one thread in this process: parallelism is across trials, and threads inside a trial
    oversubscribe. threadpool_limits reaches the libraries loaded so far (numpy's BLAS); the variables reach those
    loaded later (scipy's own BLAS and scikit-learn's OpenMP read them when they load), so no task pays for
    importing scipy.optimize (~0.8 s) or scikit-learn (~2 s per process) unless it uses them."""
    from threadpoolctl import threadpool_limits

    one_thread_env()
    threadpool_limits(1)


def one_thread_env() -> None:
    """One BLAS / OpenMP thread for every library this process loads from now on, and one set of numeric kernels
    (``fixed_kernels_env``). The CLI calls it before numpy, scipy or scikit-learn load, so the same command gives
    the same digits whatever the machine's core count, the user's thread variables or ``--jobs`` (a BLAS loaded
    with several threads and limited later runs other kernels than one loaded with one)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    fixed_kernels_env()


X86_64_V3 = {"avx2", "fma", "f16c", "bmi2", "movbe"}  # CPU flags of x86-64-v3 (AVX2; x86 CPUs since about 2015)
BLAS_KERNELS = "Haswell"  # OpenBLAS's AVX2 kernels
NUMPY_AVX512 = "X86_V4 AVX512_ICL AVX512_SPR"  # numpy >= 2.4's names of its AVX-512 dispatch targets
NATIVE_ENV = "UNIROUTER_NATIVE_KERNELS"


def fixed_kernels_env() -> None:
    """On an x86-64 CPU with AVX2, the same numeric kernels whatever the processor: OpenBLAS's Haswell kernels and
    numpy's AVX2 loops (its AVX-512 ones off). Both libraries otherwise pick kernels for the processor they run on,
    and those round (and break ties) differently: the same command and lock gave other last digits on another
    machine. Takes effect only before numpy loads; a user's own ``OPENBLAS_CORETYPE`` /
    ``NPY_DISABLE_CPU_FEATURES`` win, and ``UNIROUTER_NATIVE_KERNELS=1`` leaves the choice to the libraries
    (faster on AVX-512 machines, other digits). Other CPUs (ARM, x86 without AVX2) keep their own kernels."""
    if os.environ.get(NATIVE_ENV) == "1" or "numpy" in sys.modules or not sys.platform.startswith("linux"):
        return
    try:
        flags = next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo", encoding="ascii",
                                                                        errors="replace")
                      if line.startswith("flags")), [])
    except OSError:
        return
    if not X86_64_V3 <= set(flags):
        return
    os.environ.setdefault("OPENBLAS_CORETYPE", BLAS_KERNELS)
    try:
        from importlib.metadata import version

        major, minor = (int(x) for x in version("numpy").split(".")[:2])
    except Exception:  # noqa: BLE001 - no numpy metadata: leave numpy's choice alone
        return
    if (major, minor) >= (2, 4):  # (older numpy names its targets otherwise and warns on unknown names)
        os.environ.setdefault("NPY_DISABLE_CPU_FEATURES", NUMPY_AVX512)


def kernels() -> str:
    """The BLAS kernels and numpy's highest enabled CPU target in this process, for run records."""
    blas = "?"
    try:
        from threadpoolctl import threadpool_info

        blas = ", ".join(sorted({str(i.get("architecture")) for i in threadpool_info() if i.get("architecture")}))
    except Exception:  # noqa: BLE001 - a record, never a failure
        pass
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

        top = [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]
        simd = top[-1] if top else "baseline"
    except Exception:  # noqa: BLE001
        simd = "?"
    return f"BLAS {blas or '?'}, numpy {simd}"


# --------------------------------------------------------------------------------------------
# executors
# --------------------------------------------------------------------------------------------
def check_backend(backend: str, scheduler: str | None) -> None:
    if backend not in ("local", "dask"):
        raise ConfigError(f"unknown backend {backend!r}: expected local or dask")
    if backend == "dask" and not scheduler:
        raise ConfigError("--backend dask needs --scheduler ADDRESS (e.g. tcp://127.0.0.1:8786)")


def run_tasks(fn: Callable, args: list[tuple], jobs: int = 1, backend: str = "local",
              scheduler: str | None = None, progress: Callable[[int], None] | None = None,
              warm: Callable[[], object] | None = None) -> list:
    """Run ``fn(*a)`` for every ``a``; results in input order. Local or Dask.

    Local with jobs > 1 on Linux: ``warm()`` runs here first (loading what every task reloads:
    modules, dataset, embeddings) and forked workers inherit it, paying no start-up; elsewhere, or without
    ``warm``, joblib's loky workers start fresh interpreters."""
    check_backend(backend, scheduler)
    if not args:
        return []
    if backend == "dask":
        try:
            from dask.distributed import Client, as_completed
        except ImportError as e:
            raise ConfigError(f"--backend dask needs the 'dask' extra: {install_hint('dask')}") from e
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as e:
            raise ConfigError(f"cannot connect to the Dask scheduler at {scheduler} ({e})") from e
        try:
            futures = [client.submit(fn, *a, pure=False) for a in args]
            index = {f.key: i for i, f in enumerate(futures)}
            out: list = [None] * len(args)
            for fut in as_completed(futures):
                out[index[fut.key]] = fut.result()
                if progress:
                    progress(1)
            return out
        finally:
            client.close()
    if jobs == 1:
        out = []
        for a in args:
            out.append(fn(*a))
            if progress:
                progress(1)
        return out
    if warm is not None and sys.platform.startswith("linux"):  # macOS: fork is unsafe with its system libraries
        warm()
        return _forked(fn, args, jobs, progress)
    from joblib import Parallel, delayed

    out = [None] * len(args)
    gen = Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered")(
        delayed(_indexed)(i, fn, a) for i, a in enumerate(args))
    for i, res in gen:
        out[i] = res
        if progress:
            progress(1)
    return out


def _indexed(i: int, fn: Callable, a: tuple) -> tuple[int, object]:
    return i, fn(*a)


def _indexed_packed(packed: tuple[int, Callable, tuple]) -> tuple[int, object]:
    return _indexed(*packed)


def _forked(fn: Callable, args: list[tuple], jobs: int, progress: Callable[[int], None] | None) -> list:
    out: list = [None] * len(args)
    with multiprocessing.get_context("fork").Pool(min(jobs, len(args)), initializer=_parent_handles_ctrl_c) as pool:
        for i, res in pool.imap_unordered(_indexed_packed, [(i, fn, a) for i, a in enumerate(args)], chunksize=1):
            out[i] = res
            if progress:
                progress(1)
    return out


def _parent_handles_ctrl_c() -> None:
    """In a forked worker: ignore Ctrl-C (the terminal sends it to every process of the group); the parent
    stops the pool, so one line is printed, not a traceback per worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def lazy_progress(factory: Callable[[int, str], Callable[[int], None]] | None, total: int,
                  label: str) -> Callable[[int], None] | None:
    """A progress callback whose bar starts at its first call, after any worker is forked (a bar's refresh
    thread must not be writing to the terminal while this process forks)."""
    if factory is None:
        return None
    bar: list[Callable[[int], None]] = []

    def advance(n: int) -> None:
        if not bar:
            bar.append(factory(total, label))
        bar[0](n)

    return advance
