"""One exception family for problems a user can fix (bad params, bad input files).

The CLI prints these as a single line and exits non-zero; anything else is a bug and keeps its
traceback.
"""


class PseudovadError(Exception):
    """A user-facing error: the message names the file or key and the problem."""


class ConfigError(PseudovadError):
    """params.yaml or a `-p key=value` override is wrong."""


class DataError(PseudovadError):
    """A video, frame folder, label file or frame store is unusable."""


class TrainingError(PseudovadError):
    """Training cannot go on (non-finite loss, incompatible checkpoint)."""


class TrackingError(PseudovadError):
    """MLflow / registry problems: unreachable server, missing alias, corrupt model URI."""


class StorageError(PseudovadError):
    """S3 problems: bucket missing, credentials refused, transfer failed after retries."""
