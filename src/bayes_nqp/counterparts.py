"""The frequentist counterpart of a Bayesian fit, run for its comparison when none is given.

``bn.fit(model, panel)`` (and ``bayes-nqp fit`` without a saved replication) compares the fit
with the model's replication section, run here: the caller's layer, so that ``bayes/`` never runs
the frequentist replication itself (``bayes.fit.fit`` takes the replication summary, or a
function of the model that returns it).
"""

from __future__ import annotations

import logging

from .errors import BayesNQPError, SectionSkipped

log = logging.getLogger(__name__)


def replication_for(model) -> dict | None:
    """Run the model's counterpart replication section (for the comparison), or None.
    ``model``: a built :class:`~bayes_nqp.bayes.base.BayesModel` (its ``replication_section``
    and ``replication_options`` may depend on its spec)."""
    if model.replication_section is None:
        return None
    from .frequentist import replicate

    try:
        return replicate(model.replication_section, model.panel,
                         **{model.replication_section: dict(model.replication_options)})
    except (BayesNQPError, SectionSkipped) as exc:
        log.warning("replication for comparison failed: %s", exc)
        return None
