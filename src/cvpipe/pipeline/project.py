"""Where the project is and how its job image runs locally, without importing the engine: `cvpipe run`
starts the processes a run waits for longest from here, before its own heavier imports."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import UserError
from ..integrations import jobs
from ..integrations.lambda_runtime import TEMPLATE_ARGS, TEMPLATE_NAME
from .contract import TEMPLATE

CONTAINERS = "containers"
# The image's hosting program answers HTTP until stopped: it is no job.
HOSTING_PROGRAMS = frozenset({"serve"})
# Imported once by each job worker, so that no job pays for them.
WARM_MODULES = (
    "sklearn.svm",
    "sklearn.linear_model",
    "sklearn.ensemble",
    "sklearn.model_selection",
    "cvjobs.train",
    "cvjobs.split",
)


def find_project_root(start: Path | None = None) -> Path:
    """The cvpipe project folder: the nearest one up from ``start`` (the working directory) holding
    template.yaml and statemachine/, else the one this package was installed from."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents, Path(__file__).resolve().parents[3]):
        if (folder / TEMPLATE).is_file() and (folder / "statemachine").is_dir():
            return folder
    raise UserError("no cvpipe project here: run from the folder holding template.yaml")


def job_pool(root: Path, workers: int | None = None) -> jobs.JobPool:
    """The job image's programs (``containers/``), run as local jobs in warm worker processes; no
    worker starts before the first job."""
    containers = root / CONTAINERS
    programs = jobs.programs_from_pyproject(containers / "pyproject.toml")
    return jobs.JobPool(
        {name: target for name, target in programs.items() if name not in HOSTING_PROGRAMS},
        workers=workers,
        sys_path=[str(containers)],
        warm_modules=WARM_MODULES,
    )


@contextlib.contextmanager
def started_early(argv: Sequence[str], *, fresh_process: bool = False) -> Iterator[None]:
    """For ``cvpipe run`` (``argv`` its command line after the program name), start the job image's
    template (scikit-learn's imports: a second or more) and the Lambda environments' template now,
    so that they overlap the command's own start-up (its imports, the template, PrepareInput) instead
    of following it; the run's job pool and functions take them. Those nobody took (the command
    stopped before the run) are ended when the block ends. ``fresh_process``: this process has just
    started (the console script), so the templates may be forks of it."""
    try:
        if argv[:1] == ["run"]:
            _start_for_run(argv[1:], fresh_process)
        yield
    finally:
        jobs.end_early()


def _start_for_run(options: Sequence[str], fork: bool) -> None:
    # Only what the processes depend on is read here; the command's own parser judges the line later.
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    parser.add_argument("--workers", type=int)
    try:
        workers = parser.parse_known_args(options)[0].workers
        root = find_project_root()
        pool = job_pool(root, workers)
    except (argparse.ArgumentError, UserError, OSError, ValueError):
        return  # the command reports it
    pool.start_early(fork=fork)
    jobs.start_early(TEMPLATE_ARGS, TEMPLATE_NAME, fork=fork)
