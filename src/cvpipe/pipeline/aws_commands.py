"""`cvpipe start` and `cvpipe watch`: executions of a deployed stack, with the same input document,
progress display, summary and exit codes as `cvpipe run`."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from ..aws.clients import Aws
from ..aws.executions import (
    POLL_SECONDS,
    dataset_file,
    describe_ending,
    follow_history,
    redrive_execution,
    stage_dataset,
    start_execution,
    with_dataset_uri,
)
from ..aws.stack import find_stack
from ..errors import UserError
from ..integrations.template import bucket_name
from .input_check import ALLOWED_PACKAGES_PARAMETER, check_input, packages_named
from .local import (
    ARTIFACT_BUCKET,
    PipelineRun,
    check_execution_name,
    default_execution_name,
    kept_document,
)
from .progress import ProgressReporter
from .project import find_project_root
from .run_command import add_set_option, build_input, exit_status, print_result

INTERRUPTED = 130
EXECUTION_ARN = re.compile(r"^arn:aws[a-z-]*:states:([a-z0-9-]+):\d{12}:execution:[^:]+:[^:]+$")
EXIT_STATUS = (
    "exit status: 0 the model was registered; 2 the input, the dataset or the settings were refused (nothing was "
    "trained); 1 the run failed (no candidate succeeded, the best was below the baseline, a job failed, AWS "
    "refused a call); 130 interrupted (the execution goes on)"
)


def _aws_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--region", help="AWS region (default: the profile's, or AWS_REGION)")
    parser.add_argument("--profile", help="AWS profile (default: AWS_PROFILE or the default profile)")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    start = subparsers.add_parser(
        "start",
        help="start an execution of a deployed stack and print its ARN",
        description="Start an execution of a deployed cvpipe stack with the same input document as "
        "`cvpipe run`. A local dataset file is uploaded to the stack's bucket first.",
        epilog="with --watch, " + EXIT_STATUS,
    )
    start.add_argument("--stack", help="the stack's name (samconfig.toml's stack_name)")
    start.add_argument(
        "--redrive",
        metavar="ARN",
        help="instead of a new execution, redrive this failed, aborted or timed-out one (RedriveExecution): "
        "what succeeded is kept, the rest runs again",
    )
    start.add_argument("--input", type=Path, help="execution input JSON file")
    start.add_argument("--dataset", help="s3:// URI or local CSV file (uploaded); sets dataset.uri")
    add_set_option(start)
    start.add_argument("--name", help="execution name (default: a timestamped one)")
    start.add_argument("--watch", action="store_true", help="then follow it as `cvpipe watch` does")
    start.add_argument(
        "--json", action="store_true", help="with --watch: the execution output as one JSON document"
    )
    _aws_options(start)
    start.set_defaults(handler=start_command)

    watch = subparsers.add_parser(
        "watch",
        help="follow an execution on AWS until it ends",
        description="Follow an execution's history with the progress display of `cvpipe run`, then print the "
        "same summary. Interrupting stops the watching, not the execution.",
        epilog=EXIT_STATUS,
    )
    watch.add_argument(
        "execution_arn", metavar="ARN", help="the execution's ARN, as `cvpipe start` prints it"
    )
    watch.add_argument("--json", action="store_true", help="print the execution output as one JSON document")
    watch.add_argument("--poll", type=float, default=POLL_SECONDS, help="seconds between history reads")
    _aws_options(watch)
    watch.set_defaults(handler=watch_command)


def start_command(args: argparse.Namespace) -> int:
    try:
        if args.redrive is not None:
            aws, arn = _redrive(args)
        else:
            aws, arn = _start(args)
    except UserError as error:
        print(f"cvpipe start: {error}", file=sys.stderr)
        return error.exit_code
    if not args.watch:
        print(arn)
        return 0
    print(arn, file=sys.stderr)
    return watch(aws, arn, args.json, POLL_SECONDS)


def _redrive(args: argparse.Namespace) -> tuple[Aws, str]:
    if args.stack or args.input or args.dataset or args.overrides or args.name:
        raise UserError("--redrive continues an execution with its own input and name: give it alone")
    match = EXECUTION_ARN.match(args.redrive)
    if not match:
        raise UserError(
            f"--redrive {args.redrive!r} is not an execution ARN "
            "(arn:aws:states:REGION:ACCOUNT:execution:STATE_MACHINE:NAME)"
        )
    aws = Aws(args.region or match.group(1), args.profile)
    return aws, redrive_execution(aws, args.redrive)


def _start(args: argparse.Namespace) -> tuple[Aws, str]:
    if not args.stack:
        raise UserError("give the deployed stack: --stack NAME (or --redrive ARN)")
    if args.input is None and args.dataset is None:
        raise UserError("give the input: --input FILE, --dataset s3://BUCKET/KEY, or both")
    name = args.name or default_execution_name()
    check_execution_name(name)
    document = build_input(Path.cwd(), args.input, args.dataset, args.overrides)
    # PrepareInput's own validation, before any AWS call. Which packages the stack allows is known only
    # from the stack: until then the packages the input names are assumed allowed.
    # A local dataset file is checked as the upload it becomes (the bucket is the local stand-in's).
    root = find_project_root()
    staged = dataset_file(document)
    checked = (
        document
        if staged is None
        else with_dataset_uri(document, f"s3://{bucket_name(ARTIFACT_BUCKET)}/{staged[1]}")
    )
    assumed = packages_named(document)
    check_input(root, checked, name, {ALLOWED_PACKAGES_PARAMETER: ",".join(sorted(assumed))})
    aws = Aws(args.region, args.profile)
    stack = find_stack(aws, args.stack)
    allowed = {package.strip() for package in stack.parameters.get(ALLOWED_PACKAGES_PARAMETER, "").split(",")}
    if assumed - allowed:  # the input names a package the stack may not allow
        check_input(root, checked, name, stack.parameters)
    check_readable(document, stack.bucket)
    arn = start_execution(aws, stack.state_machine_arn, name, stage_dataset(aws, stack.bucket, document))
    return aws, arn


def check_readable(document: dict[str, Any], bucket: str) -> None:
    """The stack's jobs read datasets from its own bucket only (SageMakerExecutionRole): a dataset
    elsewhere would fail the split job minutes into the run with AccessDenied."""
    uri = str(document["dataset"]["uri"])
    if uri.startswith("s3://") and uri.removeprefix("s3://").split("/", 1)[0] != bucket:
        raise UserError(
            f"dataset.uri {uri}: the stack's jobs read only its bucket {bucket}: copy the dataset there "
            f"(aws s3 cp {uri} s3://{bucket}/datasets/{uri.rsplit('/', 1)[-1]}), or give a local file, "
            "which cvpipe start uploads there"
        )


def watch_command(args: argparse.Namespace) -> int:
    match = EXECUTION_ARN.match(args.execution_arn)
    if not match:
        print(
            f"cvpipe watch: {args.execution_arn!r} is not an execution ARN "
            "(arn:aws:states:REGION:ACCOUNT:execution:STATE_MACHINE:NAME)",
            file=sys.stderr,
        )
        return 2
    return watch(Aws(args.region or match.group(1), args.profile), args.execution_arn, args.json, args.poll)


def watch(aws: Aws, arn: str, as_json: bool, poll_seconds: float) -> int:
    progress = ProgressReporter(sys.stderr)
    kept: dict[str, Any] = {}
    try:
        for event in follow_history(aws, arn, poll_seconds):
            found = kept_document(event)
            if found:
                kept[found[0]] = found[1]
            progress(event)
        ending = describe_ending(aws, arn)
    except UserError as error:
        progress.close()
        print(f"cvpipe watch: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        progress.close()
        print(f"cvpipe watch: stopped watching; the execution goes on: cvpipe watch {arn}", file=sys.stderr)
        return INTERRUPTED
    progress.close()
    config = kept.get("config")
    output = ending.output if isinstance(ending.output, dict) else {}
    run = PipelineRun(
        ending.name,
        ending.status,
        ending.output,
        ending.error,
        ending.cause,
        run_dir=config["run"]["prefix"] if config else output.get("artifacts", "-"),
        tuning=kept.get("tuning"),
        config=config,
    )
    print_result(run, sys.stdout, as_json)
    return exit_status(run, "cvpipe watch")
