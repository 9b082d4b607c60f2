"""The warm worker pool: real worker processes running small programs written for the tests."""

from __future__ import annotations

import json
import os
import textwrap
import threading
import time
from pathlib import Path

import pytest

from cvpipe.integrations import jobs
from cvpipe.integrations.jobs import JobPool, programs_from_pyproject

pytestmark = pytest.mark.integration

PROGRAMS = {
    # Records what the job saw, and tries to leak state into the next job on the same worker.
    "probe": """
        def main(ml_root):
            seen = {"cwd": os.getcwd(), "env": dict(os.environ), "argv": sys.argv}
            (ml_root / "seen.json").write_text(json.dumps(seen))
            os.environ["LEAKED_BY_PROBE"] = "1"
            print("python print")
            print("python stderr", file=sys.stderr)
            os.write(1, b"fd-level write\\n")
            subprocess.run(["echo", "child process"], check=True)
            return 0
    """,
    "nap": """
        def main(ml_root):
            start = time.time()
            time.sleep(float(os.environ["NAP_SECONDS"]))
            (ml_root / "span.json").write_text(json.dumps([start, time.time()]))
            return 0
    """,
    "stubborn": """
        def main(ml_root):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only SIGKILL ends this one
            (ml_root / "started").touch()
            time.sleep(60)
    """,
    "crash": """
        def main(ml_root):
            os._exit(7)
    """,
    "boom": """
        def main(ml_root):
            raise ValueError("bad value for alpha")
    """,
    "refuse": """
        def main(ml_root):
            (ml_root / "output").mkdir(exist_ok=True)
            (ml_root / "output" / "failure").write_text("InvalidConfig: k must be >= 2")
            sys.exit(2)
    """,
}


def write_programs(folder: Path) -> dict[str, str]:
    header = "import json, os, signal, subprocess, sys, time\n"
    for name, body in PROGRAMS.items():
        (folder / f"cvtest_{name}.py").write_text(header + textwrap.dedent(body))
    return {name: f"cvtest_{name}:cli" for name in PROGRAMS}


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("programs")
    with JobPool(write_programs(folder), workers=2, sys_path=[str(folder)]) as pool:
        yield pool


def run(pool: JobPool, program: str, root: Path, environ: dict[str, str] | None = None, **kwargs):
    root.mkdir(parents=True, exist_ok=True)
    return pool.run(program, root, environ or {}, root / "job.log", **kwargs)


def test_programs_from_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[project.scripts]\ntrain = "cvjobs.train:cli"\nsplit = "cvjobs.split:cli"\n'
    )
    assert programs_from_pyproject(tmp_path / "pyproject.toml") == {
        "train": "cvjobs.train:cli",
        "split": "cvjobs.split:cli",
    }


def test_job_gets_its_own_folder_environment_and_log(pool: JobPool, tmp_path: Path) -> None:
    outcome = run(pool, "probe", tmp_path / "a", {"JOB_ONLY": "a"})
    assert (outcome.exit_code, outcome.stopped, outcome.timed_out) == (0, False, False)
    seen = json.loads((tmp_path / "a" / "seen.json").read_text())
    assert seen["cwd"] == str(tmp_path / "a")
    assert seen["argv"] == ["probe"]
    assert seen["env"]["JOB_ONLY"] == "a"
    assert seen["env"]["PATH"] == os.environ["PATH"]  # the base environment is kept
    log = (tmp_path / "a" / "job.log").read_text()
    for line in ("python print", "python stderr", "fd-level write", "child process"):
        assert line in log


def test_environment_does_not_leak_between_jobs(pool: JobPool, tmp_path: Path) -> None:
    # Sequential jobs take turns on the two workers, so every worker runs at least two of them.
    for index in range(4):
        run(pool, "probe", tmp_path / str(index), {f"ONLY_{index}": "x"})
    for index in range(4):
        env = json.loads((tmp_path / str(index) / "seen.json").read_text())["env"]
        assert "LEAKED_BY_PROBE" not in env
        shared = str(max(1, (os.cpu_count() or 1) // pool.size))  # the workers share the cores
        assert env["OMP_NUM_THREADS"] == os.environ.get("OMP_NUM_THREADS", shared)
        assert [key for key in env if key.startswith("ONLY_")] == [f"ONLY_{index}"]
    assert "LEAKED_BY_PROBE" not in os.environ


def test_jobs_on_two_workers_overlap_and_extra_jobs_queue(pool: JobPool, tmp_path: Path) -> None:
    roots = [tmp_path / str(index) for index in range(3)]
    outcomes = [None] * 3

    def job(index: int) -> None:
        outcomes[index] = run(pool, "nap", roots[index], {"NAP_SECONDS": "0.4"})

    threads = [threading.Thread(target=job, args=(index,)) for index in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [outcome.exit_code for outcome in outcomes] == [0, 0, 0]
    spans = sorted(json.loads((root / "span.json").read_text()) for root in roots)
    assert spans[1][0] < spans[0][1]  # the first two ran at the same time
    assert spans[2][0] >= min(spans[0][1], spans[1][1]) - 0.05  # the third waited for a worker


def test_timeout_stops_the_job_and_replaces_the_worker(pool: JobPool, tmp_path: Path) -> None:
    outcome = run(pool, "nap", tmp_path / "slow", {"NAP_SECONDS": "30"}, timeout=0.3)
    assert outcome.stopped and outcome.timed_out
    assert outcome.exit_code != 0 and outcome.seconds < 5
    assert "stopped: it ran longer than 0.3 s" in (tmp_path / "slow" / "job.log").read_text()
    assert len(pool._workers) == 2
    assert run(pool, "nap", tmp_path / "after", {"NAP_SECONDS": "0"}).exit_code == 0


def test_cancel_kills_a_job_that_ignores_sigterm(pool: JobPool, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(jobs, "STOP_GRACE_SECONDS", 0.2)
    cancelled = threading.Event()
    root = tmp_path / "stubborn"
    watcher = threading.Thread(target=lambda: _wait_for(root / "started") and cancelled.set())
    watcher.start()
    outcome = run(pool, "stubborn", root, cancelled=cancelled)
    watcher.join()
    assert outcome.stopped and not outcome.timed_out
    assert outcome.exit_code == -9  # SIGKILL after the grace period
    assert run(pool, "nap", tmp_path / "after", {"NAP_SECONDS": "0"}).exit_code == 0


def test_cancelled_before_start_never_runs(pool: JobPool, tmp_path: Path) -> None:
    cancelled = threading.Event()
    cancelled.set()
    outcome = run(pool, "probe", tmp_path / "never", cancelled=cancelled)
    assert outcome.stopped and not (tmp_path / "never" / "seen.json").exists()


def test_crashed_worker_fails_its_job_and_is_replaced(pool: JobPool, tmp_path: Path) -> None:
    outcome = run(pool, "crash", tmp_path / "crash")
    assert (outcome.exit_code, outcome.stopped) == (7, False)
    assert "exited unexpectedly with code 7" in (tmp_path / "crash" / "job.log").read_text()
    assert len(pool._workers) == 2
    assert run(pool, "nap", tmp_path / "after", {"NAP_SECONDS": "0"}).exit_code == 0


def test_exception_becomes_exit_code_1_with_traceback_and_failure_file(pool: JobPool, tmp_path: Path) -> None:
    assert run(pool, "boom", tmp_path / "boom").exit_code == 1
    assert "Traceback" in (tmp_path / "boom" / "job.log").read_text()
    assert (tmp_path / "boom" / "output" / "failure").read_text() == "ValueError: bad value for alpha"


def test_program_failure_file_and_exit_code_are_kept(pool: JobPool, tmp_path: Path) -> None:
    assert run(pool, "refuse", tmp_path / "refuse").exit_code == 2
    assert (tmp_path / "refuse" / "output" / "failure").read_text() == "InvalidConfig: k must be >= 2"


def test_unknown_program_and_missing_folder_are_refused(pool: JobPool, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown program 'nope'"):
        run(pool, "nope", tmp_path)
    with pytest.raises(NotADirectoryError):
        pool.run("probe", tmp_path / "missing", {}, tmp_path / "job.log")


def test_close_terminates_all_workers(tmp_path: Path) -> None:
    pool = JobPool(write_programs(tmp_path), workers=1, sys_path=[str(tmp_path)])
    assert run(pool, "nap", tmp_path / "once", {"NAP_SECONDS": "0"}).exit_code == 0
    processes = [worker.process for worker in pool._workers]
    pool.close()
    assert processes and not any(process.is_alive() for process in processes)
    with pytest.raises(RuntimeError, match="closed"):
        run(pool, "nap", tmp_path / "late")


def _wait_for(path: Path, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_the_warm_modules_are_imported_once_for_all_workers_and_their_replacements(tmp_path: Path) -> None:
    # The workers are forks of one process that imported them: neither a second worker nor the one
    # that replaces a crashed worker imports them again.
    (tmp_path / "cvtest_heavy.py").write_text(
        f"import os\nwith open({str(tmp_path / 'imports')!r}, 'a') as f:\n    f.write(f'{{os.getpid()}}\\n')\n"
    )
    programs = write_programs(tmp_path)
    with JobPool(programs, workers=2, sys_path=[str(tmp_path)], warm_modules=["cvtest_heavy"]) as pool:
        for index in range(3):
            assert run(pool, "nap", tmp_path / f"nap{index}", {"NAP_SECONDS": "0"}).exit_code == 0
        assert run(pool, "crash", tmp_path / "crash").exit_code == 7
        assert run(pool, "nap", tmp_path / "after", {"NAP_SECONDS": "0"}).exit_code == 0
        workers = {worker.process.pid for worker in pool._workers}
    assert len((tmp_path / "imports").read_text().split()) == 1
    assert len(workers) == 2


def test_a_pool_forks_its_workers_from_the_template_started_early_with_its_settings(tmp_path: Path) -> None:
    # A command starts the template before it can make the pool (the imports overlap its own start-up).
    (tmp_path / "cvtest_heavy.py").write_text(
        f"import os\nwith open({str(tmp_path / 'imports')!r}, 'a') as f:\n    f.write(f'{{os.getpid()}}\\n')\n"
    )
    programs = write_programs(tmp_path)
    settings = {"workers": 1, "sys_path": [str(tmp_path)], "warm_modules": ["cvtest_heavy"]}
    JobPool(programs, **settings).start_early()
    assert _wait_for(tmp_path / "imports")
    (early_pid,) = (tmp_path / "imports").read_text().split()
    try:
        with JobPool(programs, **settings) as pool:
            assert run(pool, "nap", tmp_path / "nap", {"NAP_SECONDS": "0"}).exit_code == 0
            assert pool._template is not None and str(pool._template.process.pid) == early_pid
        assert not jobs._early
        assert (tmp_path / "imports").read_text().split() == [early_pid]
    finally:
        jobs.end_early()


def test_templates_started_early_that_nobody_takes_are_ended(tmp_path: Path) -> None:
    programs = write_programs(tmp_path)
    JobPool(programs, workers=1, sys_path=[str(tmp_path)]).start_early()
    (template,) = jobs._early
    with JobPool(programs, workers=1, sys_path=[str(tmp_path / "other")]) as pool:
        pool.start()
        assert pool._template is not template  # other settings: a template of its own
    jobs.end_early()
    assert not jobs._early
    template.process.join(5)
    assert not template.process.is_alive()
