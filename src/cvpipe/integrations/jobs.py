"""A pool of warm worker processes that run container entrypoints as local jobs.

A fresh interpreter per job would cost more than a small fit (importing scikit-learn alone takes
seconds), so each worker has the heavy modules imported and then runs job after job: it calls the
program's ``main(ml_root)`` in-process, with the job's environment, working directory and log.
Module-level state therefore survives from one job to the next in a worker; programs must not
rely on a fresh interpreter (environment variables read at import time, for one, keep the values
of the worker's start).

The imports are paid once per pool, not once per worker: a template process imports the modules,
and every worker is a fork of it, ready at once. The template starts no thread, so a fork of it is
safe, and it stays idle but for forking and reaping its workers. A worker replaced after a stop or
a crash is ready in milliseconds too.

Stopping a job (cancellation or timeout) kills its worker: Python cannot interrupt a running fit
safely, a process can be. The pool then forks a fresh worker in its place.

This module imports nothing from the rest of ``cvpipe``: workers import it and should stay light.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib
import multiprocessing
import os
import queue
import signal
import socket
import sys
import threading
import time
import tomllib
import traceback
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import recv_handle, send_handle
from pathlib import Path
from typing import Any

STOP_GRACE_SECONDS = 2.0
"""How long a stopped job's worker gets to exit after SIGTERM before it is killed."""
_POLL_SECONDS = 0.05  # how often a running job looks at its cancellation event
_QUEUED_POLL_SECONDS = 0.5
"""How often a job queued for a worker looks at its cancellation event. A freed worker wakes one
queued job at once; a short poll would wake every queued job (hundreds in a big Map) many times
a second, and their turns for the interpreter lock would delay the hand-offs that matter."""
_REAP_POLL_SECONDS = 0.01  # how often the template looks whether a stopped worker has exited
WORKER_NAME = "cvpipe-job-worker"


@dataclass(frozen=True)
class JobOutcome:
    exit_code: int
    """The program's exit code; for a stopped or crashed worker, the process's (-N: signal N)."""
    stopped: bool
    """The job was ended early: cancelled, or over its time limit."""
    timed_out: bool
    seconds: float
    """Time the job ran in a worker, queueing excluded."""
    report: Any = None
    """What the run's ``host`` reported (None without a host, or when the worker did not answer)."""


def programs_from_pyproject(path: Path) -> dict[str, str]:
    """The console scripts of a ``pyproject.toml``: program name -> ``"module:attr"``."""
    with open(path, "rb") as file:
        project = tomllib.load(file).get("project", {})
    return dict(project.get("scripts", {}))


class Template:
    """A process that imports modules once, and its end of the conversation: ``fork`` a worker that
    has them imported, ``wait`` for one to exit. Its workers are not this process's children, so it
    reaps them. ``args``: ``(sys_path, modules, threads)``, ``threads`` the BLAS thread limit (None:
    none set)."""

    def __init__(
        self,
        context: Any,
        args: tuple[Any, ...],
        name: str = WORKER_NAME,
        inherited: Iterable[Connection] = (),
    ) -> None:
        """``inherited``: for a ``fork`` context, this process's connections the fork must close (those
        to other templates): a template learns that its pool is gone when its connection's other end
        closes, which a copy held elsewhere prevents."""
        self.args, self.name = args, name
        self._conn, child_end = context.Pipe()  # duplex: a socket, which can carry descriptors
        inherited = [self._conn, *inherited] if context.get_start_method() == "fork" else []
        # Not a daemon: its forks are the workers, and a job may start processes of its own.
        self.process = context.Process(target=_template, args=(child_end, inherited, *args), name=name)
        self.process.start()
        child_end.close()
        self._lock = threading.Lock()
        self._preloaded: frozenset[str] | None = None

    def preloaded(self) -> frozenset[str]:
        """The top-level modules its imports loaded (a worker's own module of one of these names
        would be shadowed). Waits for the imports."""
        with self._lock:
            if self._preloaded is None:
                self._preloaded = frozenset(self._conn.recv())
            return self._preloaded

    def fork(self, serve: Any, args: tuple[Any, ...] = ()) -> tuple[int, Connection]:
        """A new worker running ``serve(connection, *args)`` (a module-level function), then exiting:
        its pid and the connection to it. Waits for the template's imports."""
        self.preloaded()
        with self._lock:
            self._conn.send(("fork", serve, args))
            pid = self._conn.recv()
            return pid, Connection(recv_handle(self._conn))

    def wait(self, pid: int, timeout: float | None) -> int | None:
        """The worker's exit code once it exited (within ``timeout`` seconds; None: however long it
        takes), else None. A worker lost with the template reports SIGKILL."""
        with self._lock:
            try:
                self._conn.send(("wait", pid, timeout))
                code: int | None = self._conn.recv()
            except (EOFError, OSError):
                return -int(signal.SIGKILL)
            return code

    def close(self, grace: float) -> None:
        """End the template; it kills the workers it still has."""
        with self._lock:
            self._conn.close()
        reap(self.process, grace)


_early: list[Template] = []
"""Templates started ahead of their users (``start_early``), until one takes them (``take_template``)."""
_early_lock = threading.Lock()


def start_early(args: tuple[Any, ...], name: str = WORKER_NAME, *, fork: bool = False) -> None:
    """Start a template now, ahead of the pool (or other user) of this process that will ask for one
    with the same ``args`` and ``name``: its imports then overlap whatever the process does until
    then. ``end_early`` ends those that nobody took.

    ``fork``: the process has just started (it holds no connection but those of the templates started
    early), so the template may be a fork of it: it starts at once, with no interpreter to start and
    no module to import again. Not while another thread runs (its fork may inherit a held lock)."""
    method = "fork" if fork and threading.active_count() == 1 else "spawn"
    with _early_lock:
        others = [template._conn for template in _early]
        _early.append(Template(multiprocessing.get_context(method), args, name, others))


def take_template(context: Any, args: tuple[Any, ...], name: str = WORKER_NAME) -> Template:
    """The template started early with these ``args`` and ``name``, else a new one."""
    with _early_lock:
        for template in _early:
            if template.args == args and template.name == name:
                _early.remove(template)
                return template
    return Template(context, args, name)


def end_early() -> None:
    """End the templates started early that nobody took (they have no workers: they are killed)."""
    with _early_lock:
        templates = list(_early)
        _early.clear()
    for template in templates:
        template.close(0.0)


class Forked:
    """A worker process, as its user sees it (``multiprocessing.Process``'s methods it uses)."""

    def __init__(self, pid: int, template: Template) -> None:
        self.pid = pid
        self._template = template
        self.exitcode: int | None = None
        self._lock = threading.Lock()  # a stopping pool and the job's own thread may both reap it

    def is_alive(self) -> bool:
        self.join(0)
        return self.exitcode is None

    def join(self, timeout: float | None = None) -> None:
        with self._lock:
            if self.exitcode is None:
                self.exitcode = self._template.wait(self.pid, timeout)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, number: int) -> None:
        if self.exitcode is None:  # once reaped, the pid may be another process's
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, number)


@dataclass(eq=False)
class _Worker:
    process: Forked
    conn: Connection


class JobPool:
    """Runs programs (``name -> "module:attr"``; the worker calls ``module.main(ml_root)``) in
    ``workers`` long-lived processes. ``run`` is thread-safe; calls beyond the number of workers
    wait for a free one."""

    def __init__(
        self,
        programs: Mapping[str, str],
        workers: int | None = None,
        sys_path: Iterable[str] = (),
        warm_modules: Iterable[str] = (),
    ) -> None:
        self.programs = dict(programs)
        self.size = workers or os.cpu_count() or 1
        program_modules = [target.partition(":")[0] for target in self.programs.values()]
        # As joblib's workers do: the workers share the cores, rather than each BLAS using them all.
        threads = max(1, (os.cpu_count() or 1) // self.size)
        self._template_args = ([str(p) for p in sys_path], [*warm_modules, *program_modules], threads)
        self._context = multiprocessing.get_context("spawn")
        self._template: Template | None = None
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._workers: set[_Worker] = set()
        self._lock = threading.Lock()
        self._started = False
        self._closed = False
        self._grace = STOP_GRACE_SECONDS

    def start(self) -> None:
        """Start the template (or take the one ``start_early`` started) and fork the workers from it
        once it has imported, in the background, so the caller can do other work while the pool
        warms up."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the job pool is closed")
            if self._started:
                return
            self._started = True
            atexit.register(self.close)
            self._template = take_template(self._context, self._template_args)
        threading.Thread(target=self._fill, name="cvpipe-job-pool-start", daemon=True).start()

    def _fill(self) -> None:
        for _ in range(self.size):
            with contextlib.suppress(RuntimeError):  # closed meanwhile
                self._idle.put(self._spawn())

    def start_early(self, *, fork: bool = False) -> None:
        """Start this pool's template now, for an equal pool of this process to take when it starts:
        for a caller that knows the pool's settings long before it can make the pool itself. ``fork``:
        as for ``start_early``."""
        start_early(self._template_args, fork=fork)

    def run(
        self,
        program: str,
        ml_root: Path,
        environ: Mapping[str, str],
        log_path: Path,
        cancelled: threading.Event | None = None,
        timeout: float | None = None,
        host: Callable[[Callable[[], int]], tuple[int, Any]] | None = None,
    ) -> JobOutcome:
        """Run ``program`` with ``ml_root`` as its working directory and ``environ`` added to the
        worker's environment; its stdout and stderr (also C-level output) append to ``log_path``.
        The job is stopped when ``cancelled`` is set, or ``timeout`` seconds after it started.

        ``host`` (picklable) plays the platform's part on the machine that runs the job, in the
        worker, in parallel with the other workers: it is called as ``host(run)``, where ``run()``
        runs the program and returns its exit code, and returns the exit code and a report for
        ``JobOutcome.report``."""
        if program not in self.programs:
            raise ValueError(f"unknown program {program!r}; known: {', '.join(sorted(self.programs))}")
        root, log = os.path.abspath(ml_root), os.path.abspath(log_path)
        if not os.path.isdir(root):
            raise NotADirectoryError(f"the job folder {root} does not exist")
        self.start()
        worker = self._acquire(cancelled)
        if worker is None:  # cancelled while waiting for a worker: the job never started
            return JobOutcome(-int(signal.SIGTERM), stopped=True, timed_out=False, seconds=0.0)
        job = (program, self.programs[program], root, dict(environ), log, host)
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        with contextlib.suppress(OSError):  # the worker died; its connection reports it below
            worker.conn.send(job)
        while True:
            wait_for = _POLL_SECONDS if deadline is None else min(_POLL_SECONDS, deadline - time.monotonic())
            if wait([worker.conn], max(wait_for, 0.0)):
                try:
                    exit_code, report = worker.conn.recv()
                except (EOFError, OSError):  # it died: its end of the connection closed
                    exit_code = self._retire(worker, stop=False)
                    if not self._closed:
                        _note(log, f"the job's worker process exited unexpectedly with code {exit_code}")
                    return JobOutcome(exit_code, self._closed, False, time.monotonic() - started)
                self._release(worker)
                return JobOutcome(exit_code, False, False, time.monotonic() - started, report)
            timed_out = deadline is not None and time.monotonic() >= deadline
            if timed_out or (cancelled is not None and cancelled.is_set()):
                exit_code = self._retire(worker, stop=True)
                reason = f"it ran longer than {timeout:g} s" if timed_out else "it was cancelled"
                _note(log, f"the job was stopped: {reason}")
                return JobOutcome(exit_code, True, timed_out, time.monotonic() - started)

    def close(self) -> None:
        """Terminate every worker, idle or busy (busy jobs end as stopped), and the template."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers = list(self._workers)
            template = self._template
        atexit.unregister(self.close)
        for worker in workers:
            worker.process.terminate()
        for worker in workers:
            reap(worker.process, self._grace)
        if template is not None:
            template.close(self._grace)
        while True:  # busy workers' connections are closed by the threads that run their jobs
            try:
                self._idle.get_nowait().conn.close()
            except queue.Empty:
                break

    def hurry(self) -> None:
        """Stop without grace: kill every worker now, and from now on stop jobs with SIGKILL at once."""
        self._grace = 0.0
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            worker.process.kill()

    def __enter__(self) -> JobPool:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- workers ------------------------------------------------------------------------------

    def _spawn(self) -> _Worker:
        """Fork a worker from the template (a new template if it was lost) and count it in."""
        template = self._template
        assert template is not None  # started
        try:
            pid, conn = template.fork(_serve)
        except (EOFError, OSError):  # the template died (the OOM killer, a kill -9): start another
            with self._lock:
                if self._closed:
                    raise RuntimeError("the job pool is closed") from None
                if self._template is template:
                    self._template = Template(self._context, self._template_args)
                template = self._template
            assert template is not None
            pid, conn = template.fork(_serve)
        worker = _Worker(Forked(pid, template), conn)
        with self._lock:
            if not self._closed:
                self._workers.add(worker)
                return worker
        reap(worker.process, 0.0)
        conn.close()
        raise RuntimeError("the job pool is closed")

    def _acquire(self, cancelled: threading.Event | None) -> _Worker | None:
        while True:
            if self._closed:
                raise RuntimeError("the job pool is closed")
            if cancelled is not None and cancelled.is_set():
                return None
            try:
                worker = self._idle.get(timeout=_QUEUED_POLL_SECONDS)
            except queue.Empty:
                continue
            if not worker.conn.poll():  # an idle worker's connection has something only once it died
                return worker
            self._retire(worker, stop=False)  # died while idle (e.g. the OOM killer): replace it

    def _release(self, worker: _Worker) -> None:
        with self._lock:
            if not self._closed:
                self._idle.put(worker)
                return
        worker.conn.close()

    def _retire(self, worker: _Worker, *, stop: bool) -> int:
        """End a worker (SIGTERM, then SIGKILL after the grace period), put a fresh one in its
        place and return the old one's exit code."""
        if stop:
            worker.process.terminate()
        reap(worker.process, self._grace)
        worker.conn.close()
        with self._lock:
            self._workers.discard(worker)
        with contextlib.suppress(RuntimeError):  # closed: no replacement
            self._idle.put(self._spawn())
        exit_code = worker.process.exitcode
        assert exit_code is not None  # reaped
        return exit_code


def reap(process: Any, grace: float) -> None:
    """Wait ``grace`` seconds for ``process`` to exit, then kill it."""
    process.join(grace)
    if process.exitcode is None:
        process.kill()
        process.join()


def _note(log_path: str, text: str) -> None:
    """Append the runner's own remark to a job's log, as SageMaker's agent does in its logs."""
    log_fd = _open_log(log_path)
    try:
        os.write(log_fd, f"[cvpipe] {text}\n".encode())
    finally:
        os.close(log_fd)


def _open_log(log_path: str) -> int:
    """The job's log, opened for appending; made, with its folder, if need be."""
    try:
        return os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except FileNotFoundError:  # a log outside the job folder, in a folder not made yet
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        return os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


# -- the template and worker processes --------------------------------------------------------

THREAD_LIMITS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _template(
    conn: Connection,
    inherited: list[Connection],
    sys_path: list[str],
    warm_modules: list[str],
    threads: int | None,
) -> None:
    for other_end in inherited:
        other_end.close()
    # Ctrl-C reaches the whole process group; the pool decides what happens to jobs.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if threads is not None:
        for variable in THREAD_LIMITS:  # read when numpy's BLAS loads, so before any import
            os.environ.setdefault(variable, str(threads))
    sys.path[:0] = sys_path
    loaded_before = _top_level_modules()
    for name in warm_modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError:  # not installed here: a worker that needs it reports it
            continue
        except Exception:  # a job that needs the module reports the error in its own log
            traceback.print_exc()
    workers: set[int] = set()
    try:
        conn.send(sorted(_top_level_modules() - loaded_before))
        while True:
            request = conn.recv()
            if request[0] == "fork":
                _, serve, args = request
                for stream in (sys.stdout, sys.stderr):  # or the fork would write it again
                    stream.flush()
                ours, theirs = socket.socketpair()
                pid = os.fork()
                if pid == 0:
                    conn.close()
                    ours.close()
                    _worker(serve, Connection(theirs.detach()), args)
                theirs.close()
                workers.add(pid)
                conn.send(pid)
                send_handle(conn, ours.fileno(), os.getppid())
                ours.close()
            else:
                _, pid, timeout = request
                code = _wait(pid, timeout)
                if code is not None:
                    workers.discard(pid)
                conn.send(code)
    except (EOFError, OSError):  # the pool is gone (closed, or its process died)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in workers:
            _wait(pid, None)
    # Its workers are reaped and it holds nothing else: exit without the interpreter's finalization,
    # which with the heavy modules loaded takes longer (0.1-0.2 s) than all the rest of a closing pool.
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)


def _top_level_modules() -> set[str]:
    return {name.partition(".")[0] for name in list(sys.modules)}


def _wait(pid: int, timeout: float | None) -> int | None:
    """The exit code of this process's child ``pid`` once it exited within ``timeout``, else None."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            done, status = os.waitpid(pid, 0 if deadline is None else os.WNOHANG)
        except ChildProcessError:  # no child of this process (any more): report it as killed
            return -int(signal.SIGKILL)
        if done:
            return os.waitstatus_to_exitcode(status)
        if deadline is not None and time.monotonic() >= deadline:
            return None
        time.sleep(_REAP_POLL_SECONDS)


def _worker(serve: Any, conn: Connection, args: tuple[Any, ...]) -> None:
    """The forked worker: serve until its user goes, then exit without the template's clean-up."""
    code = 0
    try:
        _die_with_parent()
        serve(conn, *args)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _serve(conn: Connection) -> None:
    base_environ = dict(os.environ)
    while True:
        try:
            program, target, ml_root, environ, log_path, host = conn.recv()
            run = functools.partial(_run_job, program, target, ml_root, environ, log_path, base_environ)
            conn.send(host(run) if host is not None else (run(), None))
        except (EOFError, BrokenPipeError):  # the pool is gone
            return


def _die_with_parent() -> None:
    """End this worker, even in the middle of a job, once the template that forked it is gone (it
    goes with the pool's process, killed even by SIGKILL): no worker outlives its pool to keep
    writing into a run folder."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_ORPHAN_CHECK_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="cvpipe-parent-watch", daemon=True).start()


_ORPHAN_CHECK_SECONDS = 0.5


def _run_job(
    program: str,
    target: str,
    ml_root: str,
    environ: dict[str, str],
    log_path: str,
    base_environ: dict[str, str],
) -> int:
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    log_fd = _open_log(log_path)
    saved_fds = [os.dup(1), os.dup(2)]
    os.dup2(log_fd, 1)  # file descriptors, not sys.stdout: C extensions' output is caught too
    os.dup2(log_fd, 2)
    os.close(log_fd)
    cwd, argv = os.getcwd(), sys.argv
    _set_environ({**base_environ, **environ})
    try:
        os.chdir(ml_root)
        sys.argv = [program]
        with warnings.catch_warnings():  # a job's warning filters must not leak into the next
            return _call_main(target.partition(":")[0], Path(ml_root))
    finally:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
        for fd, saved in zip((1, 2), saved_fds, strict=False):
            os.dup2(saved, fd)
            os.close(saved)
        os.chdir(cwd)
        sys.argv = argv
        _set_environ(base_environ)


def _set_environ(wanted: dict[str, str]) -> None:
    """Make the environment ``wanted``, setting only the variables that differ (most are the same
    from one job to the next, and each setting is a call into the C library)."""
    for name in [name for name in os.environ if name not in wanted]:
        del os.environ[name]
    for name, value in wanted.items():
        if os.environ.get(name) != value:
            os.environ[name] = value


def _call_main(module_name: str, ml_root: Path) -> int:
    """Call ``main`` as a console script would and map the outcome to an exit code."""
    try:
        result = importlib.import_module(module_name).main(ml_root)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except BaseException as exc:
        traceback.print_exc()
        # SageMaker reports output/failure as the failure reason; say what went wrong if the
        # program could not.
        failure = ml_root / "output" / "failure"
        if not failure.exists():
            failure.parent.mkdir(parents=True, exist_ok=True)
            failure.write_text("".join(traceback.format_exception_only(exc)).strip())
        return 1
    return result if isinstance(result, int) else 0
