"""What the pipeline application relies on in ``statemachine/cross_validation.asl.json``.

The local runner, the progress display and the run summary read the execution's history by state
name and the states' outputs by key. Every such name is declared here, once, and
``tests/static/test_pipeline_contract.py`` reads the definition and fails, naming the missing piece,
when a state is renamed, a Fail state's error changes or a state stops writing a document the
pipeline reads.
"""

from __future__ import annotations

from typing import Final

DEFINITION: Final = "statemachine/cross_validation.asl.json"
TEMPLATE: Final = "template.yaml"

# States whose events the progress display and the recorder follow.
SPLIT_FOLDS: Final = "SplitFolds"
START_TUNING: Final = "StartTuning"
PROPOSE_CANDIDATES: Final = "ProposeCandidates"
EVALUATE_CANDIDATES: Final = "EvaluateCandidates"
FOLD_MAP: Final = "TrainFolds"
AGGREGATE_SCORES: Final = "AggregateScores"
SCORE_HOLDOUT: Final = "ScoreHoldout"
FIT_FINAL_MODEL: Final = "FitFinalModel"
REGISTER_MODEL: Final = "RegisterModel"
# From this state on the run writes to the model registry: an interrupt lets it finish.
REGISTRATION_START: Final = "EnsureModelPackageGroup"
# The Pass states that record a failed fold job (its failure reason, a stopped job, a service error).
FOLD_FAILURE_STATES: Final = frozenset({"RecordFoldFailure", "RecordFoldStopped", "RecordFoldError"})

# The run's documents live in variables (Assign); a state's StateExited event reports what it assigned
# (``assignedVariables``). The pipeline reads: state -> the variable it assigns there.
CONFIG_VARIABLE: Final = "config"
TUNING_VARIABLE: Final = "tuning"
ASSIGNED_VARIABLES: Final = {
    START_TUNING: CONFIG_VARIABLE,
    AGGREGATE_SCORES: TUNING_VARIABLE,
}
# ProposeCandidates' output is the proposal: {"round", "candidates"}.
PROPOSAL_KEYS: Final = ("round", "candidates")

# Errors a run can end with (the Error of a Fail state) that the CLI tells apart.
SPLIT_FAILED: Final = "SplitFailed"
NO_CANDIDATE_SUCCEEDED: Final = "NoCandidateSucceeded"
BELOW_BASELINE: Final = "BelowBaseline"
HOLDOUT_FAILED: Final = "HoldoutFailed"
FINAL_FIT_FAILED: Final = "FinalFitFailed"
FAIL_STATE_ERRORS: Final = frozenset(
    {SPLIT_FAILED, NO_CANDIDATE_SUCCEEDED, BELOW_BASELINE, HOLDOUT_FAILED, FINAL_FIT_FAILED}
)

# Errors raised by the Lambda functions (Lambda names the error after the exception's class):
# function folder -> the class raised for a refused input.
FUNCTION_INPUT_ERRORS: Final = {
    "prepare_input": "InvalidInputError",
    "propose_candidates": "HyperparameterLimitError",
}
# A run that ends with one of these refused what the user gave before anything was trained.
INPUT_ERRORS: Final = frozenset({*FUNCTION_INPUT_ERRORS.values(), SPLIT_FAILED})

# Progress phases: the state entered -> what the display says.
PHASES: Final = {
    SPLIT_FOLDS: "splitting the dataset into folds",
    SCORE_HOLDOUT: "scoring the chosen candidate on the holdout rows",
    FIT_FINAL_MODEL: "fitting the best candidate on all rows",
    REGISTER_MODEL: "registering the model package",
}

# Every state name above, for the contract test.
STATE_NAMES: Final = frozenset(
    {
        SPLIT_FOLDS,
        START_TUNING,
        PROPOSE_CANDIDATES,
        EVALUATE_CANDIDATES,
        FOLD_MAP,
        AGGREGATE_SCORES,
        SCORE_HOLDOUT,
        FIT_FINAL_MODEL,
        REGISTER_MODEL,
        REGISTRATION_START,
        *FOLD_FAILURE_STATES,
    }
)
