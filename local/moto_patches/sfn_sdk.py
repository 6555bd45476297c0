"""Close the PascalCase gap between moto's Step Functions engine and real Step Functions.

Real Step Functions' AWS SDK integrations (`arn:aws:states:::aws-sdk:<service>:<action>`) take
every parameter in PascalCase (`SolutionArn`), return every result field in PascalCase, and name
errors `<Service>.<ErrorCode>Exception` (e.g. `Personalize.ResourceAlreadyExistsException`).
moto 5.2's engine (`StateTaskServiceAwsSdk`) hands the parameters to boto3 unchanged (with
parameter validation off, so a PascalCase key is silently dropped), returns boto3's camelCase
result, and names errors after the action (`createSolution.ResourceAlreadyExistsException`).

`install()` patches that one class: parameters are renamed to the operation's member names and
results to PascalCase, both guided by botocore's shapes (map keys and values of plain types are
left alone), and ClientErrors get Step Functions' error names. The ASL stays written for AWS.
"""

from __future__ import annotations

import datetime
from functools import cache
from typing import Any

from botocore.exceptions import ClientError
from botocore.model import ListShape, MapShape, OperationModel, Shape, StructureShape

from local.moto_patches import require, service_model

# Step Functions' spelling of a service in error names where it is not botocore's serviceId.
# moto hands the boto3 name ("stepfunctions" for aws-sdk:sfn); Step Functions says "Sfn".
ERROR_SERVICE_NAMES = {"dynamodb": "DynamoDb", "sfn": "Sfn", "states": "Sfn", "stepfunctions": "Sfn"}


class UnknownParameterError(ValueError):
    """A parameter the operation does not have (real Step Functions rejects these too)."""


def _key(name: str) -> str:
    return name.replace("_", "").lower()


@cache
def operation_model(service: str, action: str) -> OperationModel:
    """`personalize`, `createSolution` (or `create_solution`) -> botocore's OperationModel."""
    model = service_model(service)
    wanted = _key(action)
    for name in model.operation_names:
        if _key(name) == wanted:
            return model.operation_model(name)
    raise UnknownParameterError(f"{service} has no API action {action!r}")


def error_service_name(service: str) -> str:
    if service in ERROR_SERVICE_NAMES:
        return ERROR_SERVICE_NAMES[service]
    service_id = service_model(service).service_id
    return "".join(word[:1].upper() + word[1:] for word in str(service_id).split())


def to_request(value: Any, shape: Shape | None, path: str = "") -> Any:
    """Step Functions' parameter names (any casing) -> the service model's member names."""
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        members = {_key(name): name for name in shape.members}
        out = {}
        for key, item in value.items():
            member = members.get(_key(key))
            if member is None:
                raise UnknownParameterError(
                    f"The field '{path}{key}' is not supported (members: {', '.join(shape.members)})"
                )
            out[member] = to_request(item, shape.members[member], f"{path}{key}.")
        return out
    if isinstance(shape, ListShape) and isinstance(value, list):
        return [to_request(item, shape.member, path) for item in value]
    if isinstance(shape, MapShape) and isinstance(value, dict):
        return {key: to_request(item, shape.value, f"{path}{key}.") for key, item in value.items()}
    return value


def to_sfn(value: Any, shape: Shape | None) -> Any:
    """A boto3 result -> Step Functions' casing (structure members PascalCase; map keys as they are)."""
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        return {
            key[:1].upper() + key[1:]: to_sfn(item, shape.members.get(key))
            for key, item in value.items()
            if key != "ResponseMetadata"
        }
    if isinstance(value, list):
        member = shape.member if isinstance(shape, ListShape) else None
        return [to_sfn(item, member) for item in value]
    if isinstance(value, dict):
        inner = shape.value if isinstance(shape, MapShape) else None
        return {key: to_sfn(item, inner) for key, item in value.items()}
    return value


@cache
def modelled_errors(service: str) -> frozenset[str]:
    model = service_model(service)
    return frozenset(
        shape.metadata.get("error", {}).get("code", name)
        for name in model.shape_names
        if (shape := model.shape_for(name)).metadata.get("exception")
    )


def error_name(service: str, exc: ClientError) -> str:
    """`Personalize.ResourceAlreadyExistsException`, as Step Functions names it.

    An error the service model does not declare (ThrottlingException, a 5xx fault) is the SDK's
    base exception of the service, `Personalize.PersonalizeException`: Step Functions' aws-sdk
    integration raises what the AWS SDK for Java raises (see statemachines/asl.py, SDK_TRANSIENT).
    """
    code = exc.response.get("Error", {}).get("Code") or type(exc).__name__
    prefix = error_service_name(service)
    if code not in modelled_errors(service):
        return f"{prefix}.{prefix}Exception"
    return f"{prefix}.{code if code.endswith('Exception') else code + 'Exception'}"


def install() -> None:
    """Patch moto's aws-sdk task (idempotent)."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_aws_sdk as sdk,
    )

    cls = sdk.StateTaskServiceAwsSdk
    require(cls, "_from_error", "_normalise_parameters", "_normalise_response", "_get_boto_service_name")
    if getattr(cls, "_pascal_case_adapter", False):
        return
    original_from_error = cls._from_error

    def _model(self) -> OperationModel:
        return operation_model(self._get_boto_service_name(), self.resource.api_action)

    def _normalise_parameters(self, parameters: dict, *args: Any, **kwargs: Any) -> None:
        converted = to_request(parameters, _model(self).input_shape)
        parameters.clear()
        parameters.update(converted)

    def _normalise_response(self, response: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(response, dict):
            converted = to_sfn(response, _model(self).output_shape)
            response.clear()
            response.update(converted)

    def _from_error(self, env: Any, ex: Exception):
        if isinstance(ex, ClientError):
            service = self._get_boto_service_name()
            meta = ex.response.get("ResponseMetadata", {})
            message = ex.response.get("Error", {}).get("Message", str(ex))
            cause = (
                f"{message} (Service: {error_service_name(service)}, Status Code: "
                f"{meta.get('HTTPStatusCode')}, Request ID: {meta.get('RequestId')})"
            )
            return self._get_task_failure_event(env=env, error=error_name(service, ex), cause=cause)
        if isinstance(ex, UnknownParameterError):
            return self._get_task_failure_event(env=env, error="States.Runtime", cause=str(ex))
        return original_from_error(self, env, ex)

    cls._normalise_parameters = _normalise_parameters
    cls._normalise_response = _normalise_response
    cls._from_error = _from_error
    cls._pascal_case_adapter = True
