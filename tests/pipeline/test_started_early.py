"""`cvpipe run` starts the processes a run waits for longest before its own start-up, and ends those
the run did not take."""

from __future__ import annotations

import time
from typing import Any

import pytest

from cvpipe.cli import main
from cvpipe.integrations import jobs
from cvpipe.integrations.lambda_runtime import TEMPLATE_NAME
from cvpipe.pipeline.project import started_early

pytestmark = pytest.mark.integration


def test_cvpipe_run_starts_the_job_and_lambda_templates_and_ends_those_not_taken() -> None:
    with started_early(["run", "--workers", "1", "--json"]):
        templates = list(jobs._early)
        assert sorted(template.name for template in templates) == sorted([jobs.WORKER_NAME, TEMPLATE_NAME])
        (job_template,) = (template for template in templates if template.name == jobs.WORKER_NAME)
        assert job_template.args[2] is not None  # the BLAS thread limit follows --workers
    assert not jobs._early
    for template in templates:
        template.process.join(5)
        assert not template.process.is_alive()


@pytest.mark.parametrize(
    "argv", [["models", "list"], ["asl", "run", "x.asl.json"], ["run", "--workers", "two"]]
)
def test_other_commands_and_unreadable_options_start_nothing(argv: list[str]) -> None:
    with started_early(argv):
        assert not jobs._early


def test_a_refused_run_leaves_no_process_behind(tmp_path, capsys, monkeypatch) -> None:
    started: list[jobs.Template] = []
    start_early = jobs.start_early

    def recorded(*args: Any, **options: Any) -> None:
        start_early(*args, **options)
        started.append(jobs._early[-1])

    monkeypatch.setattr(jobs, "start_early", recorded)
    assert main(["run", "--home", str(tmp_path), "--input", str(tmp_path / "missing.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert len(started) == 2 and not jobs._early
    for template in started:
        template.process.join(5)
        assert not template.process.is_alive()


def test_templates_forked_from_a_fresh_process_each_learn_when_their_user_goes() -> None:
    # The second fork inherits the first one's connection: it must not keep the first one alive.
    with started_early(["run"], fresh_process=True):
        taken = [jobs.take_template(None, template.args, template.name) for template in list(jobs._early)]
    for template in taken:
        template.preloaded()  # its imports done, it waits for requests
    for template in taken:  # the first forked first
        started = time.monotonic()
        template.close(jobs.STOP_GRACE_SECONDS)  # killed only if it did not exit on its own by then
        assert time.monotonic() - started < jobs.STOP_GRACE_SECONDS / 2
        assert template.process.exitcode == 0
