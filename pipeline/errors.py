"""One exception root for the runtime, so callers can catch everything we raise on purpose."""


class PipelineError(Exception):
    """Root of every error the pipeline raises deliberately."""


class ConfigError(PipelineError):
    """A configuration file or value is invalid; the message names the field."""


class SourceError(PipelineError):
    """A video source could not be opened, read or decoded."""


class ModelError(PipelineError):
    """A model artifact is missing, malformed or does not match its manifest."""


class SinkError(PipelineError):
    """Publishing events (Redis) failed."""
