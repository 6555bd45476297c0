"""The stack's side of local IAM: each function and the state machine act as their template role.

- writes the roles file (local.iam.policies: the template's policies, resolved) that the
  Personalize engine's process reads (LOCAL_IAM_ROLES_FILE);
- gives each function's workers their role's access key, and moto's Step Functions engine the
  state machine's (moto_patches.sfn_credentials);
- decides moto's requests (moto_patches.iam_enforcement) and the Lambda runner's invocations.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from local.iam import policies
from local.iam.authorizer import ROLES_FILE_ENV, Authorizer, caller_key
from local.moto_patches import iam_enforcement, sfn_credentials
from local.sam.template import Template


class StackAccess:
    def __init__(self, template: Template, state_dir: Path):
        self.path = policies.write_roles_file(template, state_dir / "iam" / "roles.json")
        self.authorizer = Authorizer.from_file(self.path)
        self.template = template

    def install(self) -> None:
        """Enforce from now on (after moto_patches.install()); the engine reads the roles file."""
        os.environ[ROLES_FILE_ENV] = str(self.path)
        iam_enforcement.use(self.authorize_moto)
        machine = self.state_machine_role()
        sfn_credentials.use(self.authorizer.credentials(machine) if machine else None)

    def uninstall(self) -> None:
        iam_enforcement.use(None)
        sfn_credentials.use(None)
        if os.environ.get(ROLES_FILE_ENV) == str(self.path):
            del os.environ[ROLES_FILE_ENV]

    def credentials(self, logical_id: str) -> dict[str, str]:
        """The environment of a function's workers (empty: it keeps the admin credentials)."""
        role = self.authorizer.principals.get(logical_id)
        return self.authorizer.credentials(role) if role in self.authorizer.roles else {}

    def state_machine_role(self) -> str | None:
        """moto's engine has one client factory for every execution: one state machine's role.
        The template has one (TrainingStateMachine); with several, the first is used."""
        machines = self.template.of_type("AWS::Serverless::StateMachine")
        for machine in machines:
            role = self.authorizer.principals.get(machine.logical_id)
            if role in self.authorizer.roles:
                return role
        return None

    def authorize_moto(self, key: str | None, service: str, operation: str, params: dict) -> str | None:
        denied = self.authorizer.authorize(key, service, operation, params)
        return denied.message if denied else None

    def authorize_invoke(self, headers: Any, function_arn: str) -> str | None:
        denied = self.authorizer.authorize(
            caller_key(headers), "lambda", "Invoke", {"FunctionName": function_arn}
        )
        return denied.message if denied else None
