"""The error every start-up refusal raises: a setting, a file it names or a service
definition is unusable. Its own module so that the modules settings check with
(cds_service/jwk_sets.py) need not import the settings."""


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names it."""
