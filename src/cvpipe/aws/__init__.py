"""The AWS-facing layer: a deployed stack's state machine, executions and model registry, through boto3.

boto3 is imported when a client is first made, never at import time: `cvpipe run` and the other
local commands do not pay for it.
"""
