"""The node's exception hierarchy; the tablet API maps each class to an HTTP status."""

from __future__ import annotations


class RaeError(Exception):
    """Base of every error the node raises on purpose."""

    code = "error"


class NotFoundError(RaeError):
    """Something named by the caller does not exist (HTTP 404)."""

    code = "not_found"


class InvalidInputError(RaeError):
    """The caller sent something wrong (HTTP 400/422)."""

    code = "invalid_input"


class ConflictError(RaeError):
    """The request conflicts with stored state (HTTP 409)."""

    code = "conflict"


class PermissionDeniedError(RaeError):
    """The caller's role may not do this (HTTP 403)."""

    code = "forbidden"


class SchemaTooNewError(RaeError):
    """The data folder was written by a newer release; refusing to open it."""

    code = "schema_too_new"
