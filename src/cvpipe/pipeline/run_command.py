"""`cvpipe run`: one execution of the cross-validation pipeline on this machine."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from ..errors import USAGE, UserError
from ..integrations.faults import AccountLimits, FaultsError
from ..integrations.registry import OPERATIONS as REGISTRY_OPERATIONS
from ..integrations.sagemaker import JOB_OPERATIONS
from ..stdio import reserved_stdout
from . import contract
from .local import RECORD, Interrupts, LocalPipeline, PipelineRun
from .progress import ProgressReporter
from .project import find_project_root

DEMO_INPUT = Path("examples/demo.json")
MAX_REASONS = 3  # failed candidates explained in the summary


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the pipeline locally (with no arguments: the Iris/SVC demo)",
        description="Run one execution of the cross-validation workflow on this machine, from the "
        "same definition that Step Functions runs.",
        epilog="exit status: 0 the model was registered; 2 the input, the dataset or the settings were refused "
        "(nothing was trained); 1 the run failed (no candidate succeeded, the best was below the baseline, a job "
        "failed); 130 interrupted by Ctrl-C (SIGINT), 143 stopped by SIGTERM: the run is recorded as aborted "
        "and --resume continues it",
    )
    parser.add_argument(
        "--input",
        type=Path,
        help="execution input JSON file (default: examples/demo.json, or with --dataset an empty input)",
    )
    parser.add_argument("--dataset", help="CSV file or s3:// URI; sets dataset.uri")
    add_set_option(parser)
    parser.add_argument("--name", help="execution name (default: a timestamped one)")
    parser.add_argument(
        "--resume",
        metavar="EXECUTION_NAME",
        help="continue a run that was interrupted, failed or killed: the fold jobs that completed are "
        "reused, the rest run again (as Step Functions' RedriveExecution does)",
    )
    parser.add_argument("--json", action="store_true", help="print the execution output as one JSON document")
    parser.add_argument("--workers", type=int, help="local job worker processes (default: one per core)")
    parser.add_argument("--home", type=Path, help="local state folder (default: $CVPIPE_HOME or ./.cvpipe)")
    add_faults_option(parser)
    parser.set_defaults(handler=run_command)


def add_faults_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--faults",
        type=Path,
        metavar="FILE",
        help='rehearse AWS\'s bad days: JSON {"rules": [{"action": "CreateTrainingJob", "match": "-c0-f3-", '
        '"error": "ResourceLimitExceeded", "times": null}], "quotas": {"ml.m5.large": 2}} '
        "(quotas: concurrent instances per type, default 2 like a new account's; see docs/local-engine.md)",
    )


def add_set_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one input field, e.g. --set cv.k=10 --set model.estimator=LogisticRegression "
        "(VALUE is JSON when it parses, else a string)",
    )


def run_command(args: argparse.Namespace) -> int:
    # SIGINT and SIGTERM are taken alike from here on: the run's loop stops the jobs, records the run
    # and ends with 128 + the signal's number, whatever phase the run is in.
    interrupts = Interrupts(notice=lambda text: print(f"cvpipe run: {text}", file=sys.stderr))
    with interrupts.handled():
        return _run(args, interrupts)


def _run(args: argparse.Namespace, interrupts: Interrupts) -> int:
    try:
        if args.resume is not None and (args.input or args.dataset or args.overrides or args.name):
            raise UserError("--resume continues a run with its own input and name: give it alone")
        root = find_project_root()
        execution_input = {} if args.resume else build_input(root, args.input, args.dataset, args.overrides)
        limits = read_faults(args.faults) if args.faults else None
        pipeline = LocalPipeline(root, home=args.home, workers=args.workers, limits=limits)
    except UserError as error:
        print(f"cvpipe run: {error}", file=sys.stderr)
        return error.exit_code
    if interrupts.received:  # before anything ran: nothing to record
        print("cvpipe run: interrupted before the run started; nothing was run", file=sys.stderr)
        return interrupts.exit_code or 130
    with reserved_stdout() as stdout, pipeline:
        progress = ProgressReporter(sys.stderr)
        try:
            if args.resume:
                run = pipeline.resume(args.resume, on_event=progress, interrupts=interrupts)
            else:
                run = pipeline.run(execution_input, name=args.name, on_event=progress, interrupts=interrupts)
        except UserError as error:
            print(f"cvpipe run: {error}", file=sys.stderr)
            return error.exit_code
        progress.close()
        print_result(run, stdout, args.json)
    if run.status == "ABORTED" and interrupts.received:
        print(
            f"cvpipe run: execution {run.name} stopped ({run.cause}); recorded in {pipeline.run_dir(run.name) / RECORD}; "
            f"continue it with: cvpipe run --resume {run.name}",
            file=sys.stderr,
        )
        return interrupts.exit_code or 130
    status = exit_status(run, "cvpipe run")
    if status and run.worth_resuming:
        print(
            f"cvpipe run: to run again what did not finish: cvpipe run --resume {run.name}", file=sys.stderr
        )
    if not status and interrupts.received:
        print(
            "cvpipe run: interrupted as the run ended: it had succeeded, and is recorded so", file=sys.stderr
        )
    return status


def print_result(run: PipelineRun, stdout: TextIO, as_json: bool) -> None:
    if as_json:
        json.dump(run.document(), stdout, indent=2)
        stdout.write("\n")
    else:
        print_summary(run, stdout)


def exit_status(run: PipelineRun, command: str) -> int:
    """0 registered; 2 the input, dataset or settings refused; 1 any other failure (said on stderr)."""
    if run.status != "SUCCEEDED":
        print(f"{command}: execution {run.status}: {run.error}: {explain_failure(run)}", file=sys.stderr)
        return USAGE if run.input_rejected else 1
    return 0


def build_input(
    root: Path, input_file: Path | None, dataset: str | None, overrides: list[str]
) -> dict[str, Any]:
    """The execution input: a JSON file, then --dataset, then each --set.

    Without a file it is the demo's input, or, when --dataset names other data, an empty one: the
    demo's target, metric and baseline are Iris's.
    """
    if input_file is None and dataset is not None:
        document: dict[str, Any] = {}
    else:
        document = read_input(input_file or root / DEMO_INPUT)
        if input_file is None:
            # The demo's dataset path is relative to the project, wherever cvpipe runs from.
            document["dataset"]["uri"] = str(root / document["dataset"]["uri"])
    if dataset is not None:
        set_field(document, "dataset.uri", dataset)
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep or not all(key.split(".")):
            raise UserError(f"--set {override!r}: expected KEY=VALUE with a dotted KEY, e.g. --set cv.k=10")
        set_field(document, key, parse_value(raw))
    return document


def read_json(path: Path, option: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{option} {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{option} {path}: cannot read it ({error})") from None
    except json.JSONDecodeError as error:
        raise UserError(f"{option} {path}: not valid JSON ({error})") from None


def read_input(path: Path) -> dict[str, Any]:
    document = read_json(path, "--input")
    if not isinstance(document, dict):
        raise UserError(f"--input {path}: the execution input must be a JSON object")
    return document


def read_faults(path: Path) -> AccountLimits:
    """``--faults FILE``: the local account's quotas and the fault rules of its services."""
    try:
        return AccountLimits.from_document(
            read_json(path, "--faults"), (*JOB_OPERATIONS, *REGISTRY_OPERATIONS), JOB_OPERATIONS
        )
    except FaultsError as error:
        raise UserError(f"--faults {path}: {error}") from None


def parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def set_field(document: dict[str, Any], dotted_key: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested document, creating objects on the way."""
    *parents, leaf = dotted_key.split(".")
    node = document
    for i, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parents[: i + 1])
            raise UserError(f"cannot set {dotted_key}: {where} is not an object in the input")
        node = child
    node[leaf] = value


def candidate_failures(history: list[dict[str, Any]]) -> list[str]:
    """One line per failed candidate (the first few): its params and its first fold's FailureReason."""
    failed = [entry for entry in history if entry["failures"]]
    lines = [
        f"candidate {entry['id']} {json.dumps(entry['params'], sort_keys=True)}: "
        f"fold {entry['failures'][0]['fold']}: {entry['failures'][0]['cause']}"
        for entry in failed[:MAX_REASONS]
    ]
    if len(failed) > MAX_REASONS:
        lines.append(f"... and {len(failed) - MAX_REASONS} more")
    return lines


def explain_failure(run: PipelineRun) -> str | None:
    """The cause, and when no candidate succeeded, why: the first fold failure of each candidate."""
    cause = readable_cause(run.cause)
    if run.error != contract.NO_CANDIDATE_SUCCEEDED or not run.tuning:
        return cause
    return (cause or "") + "".join(f"\n  {line}" for line in candidate_failures(run.tuning["history"]))


def readable_cause(cause: str | None) -> str | None:
    """A function error's cause is Lambda's JSON error document: its message is what users need."""
    try:
        document = json.loads(cause or "")
    except json.JSONDecodeError:
        return cause
    return document.get("errorMessage", cause) if isinstance(document, dict) else cause


def print_summary(run: PipelineRun, out: TextIO) -> None:
    doc = run.document()
    best = doc.get("best")
    print(f"execution   {run.name}: {run.status}", file=out)
    if best:
        cv = best["cv"]
        folds = ", ".join(f"{score:.4f}" for score in cv["folds"])
        print(f"best        candidate {best['id']}: {json.dumps(best['params'], sort_keys=True)}", file=out)
        print(
            f"cv {doc.get('metric') or 'score':<8} {cv['mean']:.4f} ± {cv['std']:.4f}  (folds: {folds})",
            file=out,
        )
    tuning = doc.get("tuning") or {}
    if tuning:
        print(
            f"tuning      {tuning.get('evaluated', 0)} candidates in {tuning.get('rounds', 0)} round(s), "
            f"{tuning.get('failed', 0)} failed",
            file=out,
        )
        if best:  # a run where nothing succeeded explains its failures on stderr
            for line in candidate_failures(tuning.get("history") or []):
                print(f"failed      {line}", file=out)
    holdout_scores = (doc.get("holdout") or {}).get("score")
    if holdout_scores:
        rows = (doc.get("dataset") or {}).get("holdout_rows")
        print(
            f"holdout     {holdout_scores[0]:.4f} on {rows} rows no fold job saw (the gate's estimate)",
            file=out,
        )
    if doc["baseline"] is not None and best:
        verdict = "passed" if run.status == "SUCCEEDED" else "not passed"
        print(f"baseline    {doc['baseline']}: {verdict}", file=out)
    if doc.get("model_package_arn"):
        print(f"registered  {doc['model_package_arn']} (version {doc['model_package_version']})", file=out)
    else:
        print("registered  nothing", file=out)
    print(f"artifacts   {doc['run_dir']}", file=out)
