"""`cvpipe asl run`: run any Amazon States Language definition on this machine.

Prints one JSON object on stdout, ``{"status", "output", "error", "cause"}``, and exits 0 when the
execution SUCCEEDED, 1 when it did not, 2 when it could not start (bad definition, input or template).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

from ..asl import DefinitionError, Engine, RealClock, TaskRegistry, VirtualClock
from ..asl.engine import SUCCEEDED, parse_definition
from ..asl.validate import validate
from ..errors import USAGE, UserError
from ..integrations import local_aws
from ..integrations.faults import AccountLimits
from ..integrations.jobs import JobPool
from ..integrations.lambda_ import register_lambda
from ..integrations.registry import LocalModelRegistry, register_registry
from ..integrations.sagemaker import register_sagemaker
from ..integrations.sagemaker_instance import VolumeDiscarder
from ..integrations.stepfunctions import register_step_functions
from ..integrations.store import LocalObjectStore, StoreObjects, register_s3
from ..integrations.template import (
    Template,
    TemplateError,
    state_machine_for,
    substitute,
)
from ..pipeline.local import local_home
from ..pipeline.project import find_project_root, job_pool
from ..pipeline.run_command import add_faults_option, read_faults
from ..stdio import reserved_stdout


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    asl = subparsers.add_parser("asl", help="run Amazon States Language definitions locally")
    commands = asl.add_subparsers(dest="asl_command", required=True)
    run = commands.add_parser(
        "run",
        help="run one execution of a definition",
        description="Run an ASL definition as Step Functions would, and print "
        '{"status", "output", "error", "cause"} as JSON.',
    )
    run.add_argument("definition", type=Path, help="the definition (.asl.json)")
    run.add_argument("--input", help="execution input: JSON text or a JSON file (default: {})")
    run.add_argument(
        "--template",
        type=Path,
        help="SAM template: fills ${Placeholders} from the state machine's DefinitionSubstitutions "
        "and runs its Lambda functions in local execution environments",
    )
    run.add_argument(
        "--store",
        type=Path,
        help="folder of the local object store (S3 as folders: DIR/BUCKET/KEY): Distributed Maps read "
        "items from it and write results to it, s3 getObject/putObject tasks use it, and SageMaker "
        "training and processing jobs (the job image's programs) and Model Registry tasks run on it",
    )
    run.add_argument(
        "--state-machine",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="a definition that states:startExecution tasks may start by that name (repeatable)",
    )
    run.add_argument(
        "--virtual-clock", action="store_true", help="Wait states and retry back-off take no time"
    )
    run.add_argument("--name", help="execution name (default: a UUID)")
    add_faults_option(run)
    run.add_argument(
        "--home",
        type=Path,
        help="with --store: local state folder of the Model Registry and the job folders "
        "(default: $CVPIPE_HOME or ./.cvpipe, as for cvpipe run)",
    )
    run.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    registry = TaskRegistry()
    functions = None
    jobs = None
    try:  # everything that can stop the execution from starting exits 2
        execution_input = read_input(args.input)
        limits = read_faults(args.faults) if args.faults else None
        if args.store is None and (limits is not None or args.home is not None):
            raise UserError(
                f"{'--faults' if limits is not None else '--home'}: the local SageMaker and Model Registry run "
                "with a local object store, where their data lives: add --store DIR"
            )
        text = read_text(args.definition, "definition")
        machine_name = args.definition.name.split(".")[0]
        substitutions: dict[str, str] = {}
        store = None if args.store is None else LocalObjectStore(args.store)
        objects = None if store is None else StoreObjects(store)
        if args.template is not None:
            template = Template(args.template)
            machine = state_machine_for(template, args.definition)
            machine_name, substitutions = machine.logical_id, machine.substitutions
            # The functions' S3 GetObject calls read the store, as a function reads S3 in Lambda.
            functions = register_lambda(registry, template.functions(), template.path.parent, objects)
        definition = parse_definition(substitute(text, substitutions))
        nested = nested_definitions(args.state_machine, substitutions)
        if store is not None:
            register_s3(registry, store)
            # Only a definition that calls SageMaker gets a registry (and a state folder) made for it.
            if limits is not None or any(
                ":sagemaker:" in json.dumps(d) for d in (definition, *nested.values())
            ):
                jobs, volumes = register_local_account(registry, store, local_home(args.home), limits)
        engine = Engine(
            registry,
            VirtualClock() if args.virtual_clock else RealClock(),
            account_id=local_aws.ACCOUNT_ID,
            region=local_aws.region(),
            objects=objects,
        )
        register_step_functions(registry, engine, nested)
        with reserved_stdout() as stdout:
            result = engine.run(definition, execution_input, name=args.name, state_machine_name=machine_name)
            summary = {
                "status": result.status,
                "output": result.output,
                "error": result.error,
                "cause": result.cause,
            }
            json.dump(summary, stdout, indent=2)
            stdout.write("\n")
    except UserError as exc:
        print(f"cvpipe asl run: {exc}", file=sys.stderr)
        return exc.exit_code
    except (TemplateError, DefinitionError) as exc:
        print(f"cvpipe asl run: {exc}", file=sys.stderr)
        return USAGE
    finally:
        if functions is not None:
            functions.close()
        if jobs is not None:
            jobs.close()
            volumes.drain()  # the jobs' volumes still in the trash, the workers' spares among them
    return 0 if result.status == SUCCEEDED else 1


def register_local_account(
    registry: TaskRegistry, store: LocalObjectStore, home: Path, limits: AccountLimits | None
) -> tuple[JobPool, VolumeDiscarder]:
    """SageMaker training and processing jobs (the job image's programs, as `cvpipe run` runs them;
    folders under HOME/asl-jobs/EXECUTION/) and the Model Registry (HOME/registry.sqlite, the one
    `cvpipe models list` reads), with the account's quotas and injected faults."""
    try:
        model_registry = LocalModelRegistry(home / "registry.sqlite", store)
    except (OSError, sqlite3.Error) as error:
        raise UserError(
            f"local state folder {home}: cannot hold the model registry there ({error})"
        ) from None
    jobs = job_pool(find_project_root())
    volumes = register_sagemaker(
        registry,
        store,
        jobs,
        jobs_dir=lambda request: home / "asl-jobs" / request.context["Execution"]["Name"],
        limits=limits,
    )
    register_registry(registry, model_registry, limits)
    return jobs, volumes


def nested_definitions(given: list[str], substitutions: dict[str, str]) -> dict[str, dict[str, Any] | str]:
    """``--state-machine NAME=FILE`` options as name -> definition."""
    definitions: dict[str, dict[str, Any] | str] = {}
    for option in given:
        name, _, file = option.partition("=")
        if not name or not file:
            raise UserError(f"--state-machine {option!r}: write NAME=FILE")
        definitions[name] = parse_definition(substitute(read_text(Path(file), "definition"), substitutions))
        validate(definitions[name])  # refused before anything runs, as CreateStateMachine would
    return definitions


def read_text(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise UserError(f"cannot read the {what} {path}: {exc.strerror}") from exc


def read_input(value: str | None) -> Any:
    """``--input``: a JSON file if one exists at that path, else JSON text."""
    if value is None:
        return {}
    path = Path(value)
    if path.is_file():
        try:
            return json.loads(read_text(path, "--input file"))
        except ValueError as exc:
            raise UserError(f"--input file {path} is not JSON: {exc}") from exc
    try:
        return json.loads(value)
    except ValueError:
        raise UserError(f"--input {value!r} is neither JSON text nor an existing file") from None
