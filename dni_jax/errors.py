"""Errors a user can fix: each message names the problem and the fix."""


class DNIError(Exception):
  """Base class of the errors that ``experiments.main`` reports without a traceback."""


class ConfigError(DNIError, ValueError):
  """A config field has a value the code cannot use."""


class DataError(DNIError, ValueError):
  """A data file or folder is missing, truncated or not in the expected format."""


class TrainingDivergedError(DNIError, FloatingPointError):
  """A loss or the state became NaN/Inf; the last good checkpoint is kept."""


class WorkdirError(DNIError, ValueError):
  """The workdir cannot be used, or holds a run made by another config."""


class CheckpointError(DNIError, ValueError):
  """A checkpoint cannot be restored into this config's state."""


class RunInterrupted(KeyboardInterrupt):
  """Ctrl-C during a run; says where it stopped and what a rerun resumes."""
