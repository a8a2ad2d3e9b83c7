"""What can go wrong with a packaged model: every error names the file and what to do."""

from __future__ import annotations


class ModelError(Exception):
    """Base of the errors raised by ``rae_models``."""


class ModelFileMissingError(ModelError):
    """A model file is not where the installed packages (or ``RAE_MODELS_DIR``) put it.

    Never answered by a download: the appliance is offline by design.
    """


class ModelChecksumError(ModelError):
    """A model file's size or sha256 differs from the manifest committed in the repo."""
