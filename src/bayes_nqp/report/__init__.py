"""The report: DIR/report.html (self-contained) and DIR/report.md, built from saved results only.

    import bayes_nqp as bn
    bn.report("reports")        # -> {"html": Path, "md": Path}
"""

import sys
import types

from .build import build_report, context

__all__ = ["build_report", "context"]


class _CallableModule(types.ModuleType):
    """Importing this package rebinds ``bayes_nqp.report`` from the function ``bn.report`` to the
    package; making the package callable keeps ``bn.report(DIR)`` working either way."""

    def __call__(self, out="reports"):
        return build_report(out)


sys.modules[__name__].__class__ = _CallableModule
