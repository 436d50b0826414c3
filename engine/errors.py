"""User-facing errors: the CLI prints them as one message, without a traceback."""


class CqError(Exception):
    """A mistake in user input (a file, a flag, a query) with a message that says where and why."""


class DagError(CqError):
    """A DAG file that cannot be built into a structural causal model."""


class DataError(CqError):
    """A data file (npz, PNG, resampled set) that is missing or malformed."""


class CheckpointError(CqError):
    """A checkpoint that is missing, truncated, foreign, or made for another DAG."""


class QueryError(CqError):
    """A .cq query that does not parse or cannot be answered."""
