"""Personalize's exceptions, as raised by the engine. The server turns them into each protocol's
error response (json 1.1: HTTP 400 + `__type`; rest-json: the status the service model gives the
exception + `x-amzn-ErrorType`)."""

from __future__ import annotations


class ApiError(Exception):
    code = "InvalidInputException"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidInput(ApiError):
    code = "InvalidInputException"


class InvalidNextToken(ApiError):
    code = "InvalidNextTokenException"


class LimitExceeded(ApiError):
    code = "LimitExceededException"


class AlreadyExists(ApiError):
    code = "ResourceAlreadyExistsException"


class InUse(ApiError):
    code = "ResourceInUseException"


class NotFound(ApiError):
    code = "ResourceNotFoundException"


class UnknownOperation(ApiError):
    code = "UnknownOperationException"


class AccessDenied(ApiError):
    """The caller's role does not allow the action (local.iam); HTTP 400 in the json 1.1 protocol."""

    code = "AccessDeniedException"
