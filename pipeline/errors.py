"""User-facing errors.

Every error a user can cause (bad path, bad config, bad data) is a `PipelineError`: the CLI
prints its message as one paragraph and exits with `exit_code`, with no traceback. Anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class PipelineError(Exception):
    """An error caused by the user's input; the message says what was wrong and what to do."""

    exit_code = 2


class ConfigError(PipelineError):
    """The config file or a command-line override is invalid."""


class InputError(PipelineError):
    """A corpus, tokenizer or model given as input cannot be used."""


class RunBusy(PipelineError):
    """Another command holds the run's lock."""

    exit_code = 5
