"""moto's Step Functions engine: a second execution of a state machine, and unnamed executions."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from local.moto_patches import require


def install() -> None:
    """Let moto's Step Functions engine start a second execution of a state machine (two fixes).

    moto 5.2.1's StartExecution deep-copies the state machine, including its past executions,
    whose workers hold boto3 clients (locks): the copy raises "cannot pickle '_thread.RLock'"
    and every execution after the first one that called a service fails with HTTP 500.
    The clone only needs the definition and settings, so past executions are shared, not copied.
    """
    from moto.stepfunctions.models import StateMachine
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    require(StepFunctionsParserBackend, "start_execution")

    if getattr(StateMachine, "_local_clone_fix", False):
        return

    def deepcopy_sharing_executions(self: Any, memo: dict) -> Any:
        clone = self.__class__.__new__(self.__class__)
        memo[id(self)] = clone
        for key, value in self.__dict__.items():
            setattr(clone, key, value if key == "executions" else copy.deepcopy(value, memo))
        return clone

    StateMachine.__deepcopy__ = deepcopy_sharing_executions
    StateMachine._local_clone_fix = True

    # StartExecution without a name: AWS generates a UUID, moto names it "None" (so the second
    # unnamed execution of a machine fails with ExecutionAlreadyExists).
    original = StepFunctionsParserBackend.start_execution

    def start_execution(
        self: Any, state_machine_arn: str, name: str | None = None, *args: Any, **kwargs: Any
    ):
        return original(self, state_machine_arn, name or str(uuid.uuid4()), *args, **kwargs)

    StepFunctionsParserBackend.start_execution = start_execution
