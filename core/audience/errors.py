"""Errors of the audience-expansion engine: each carries a message a marketer can act on."""

from __future__ import annotations

from core import errors


class AudienceError(ValueError):
    """Input that the expansion procedure cannot use (the message says what and why)."""


class NotFoundError(KeyError):
    """A package, model run or expansion run id that does not exist."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0]) if self.args else "not found"


class NoClickersError(AudienceError):
    """The package has no clicks in the training period: there are no positives."""


class NoImpressionsError(AudienceError):
    """The package has no impressions in a period: there are no users to sample or target."""


class FeatureError(AudienceError):
    """User features missing, or values that cannot be one-hot encoded."""


class SimilarAdsError(AudienceError, errors.RetrievalError):
    """The similar-ad step of an expansion cannot return what was asked (N larger than the catalog, a run without an index).

    It is core.errors.RetrievalError raised inside an expansion (``except RetrievalError`` catches it), and an
    AudienceError too, so that a run over many packages skips the package with this reason.
    """
