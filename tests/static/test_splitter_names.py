"""The splitters the input accepts are the splitters the split job builds.

The two lists live in two deployables (the functions' shared layer and the job image), which cannot
import each other, so this test holds them in step.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def tuple_constant(path: Path, name: str) -> tuple[str, ...]:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == name for target in node.targets
        ):
            return tuple(ast.literal_eval(node.value))
    raise AssertionError(f"{path.relative_to(ROOT)} defines no {name}")


@pytest.mark.parametrize(
    ("job_name", "input_name"), [("SPLITTERS", "SPLITTERS"), ("REPEATED", "REPEATED_SPLITTERS")]
)
def test_the_input_and_the_split_job_know_the_same_splitters(job_name: str, input_name: str) -> None:
    job = tuple_constant(ROOT / "containers/cvjobs/split.py", job_name)
    accepted = tuple_constant(ROOT / "functions/shared/workflow_documents/execution_input.py", input_name)
    assert set(job) == set(accepted), (
        f"only the split job knows {sorted(set(job) - set(accepted))}; "
        f"only the input accepts {sorted(set(accepted) - set(job))}"
    )
