"""The base error of the rules package."""


class RulesError(Exception):
    """Base class of every error the workflow language raises (bad YAML, bad expressions, ...)."""
