"""The errors the classification pipeline reports to its user (printed without a traceback)."""


class PipelineError(Exception):
    """Something the user can fix: a config key, a path, a checkpoint, a flag."""


class ConfigError(PipelineError):
    """A config key that does not exist, or a value of the wrong type or out of range."""


class DataError(PipelineError):
    """A dataset folder that is missing or not in the ImageFolder layout."""


class CheckpointError(PipelineError):
    """A checkpoint that is missing, unreadable, or does not fit the model."""
