"""Stage 6, everything -> one report: the self-contained HTML report and the static figures.

:mod:`~smallmines.report.inputs` finds what a folder holds, :mod:`~smallmines.report.sections` and
:mod:`~smallmines.report.webmap` build the parts, :mod:`~smallmines.report.build` assembles the page
(:func:`build_report`); :mod:`~smallmines.report.figures` draws training and data figures.
"""

from smallmines._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "build": ["build_report"],
    "inputs": ["ReportInputs", "find_inputs"],
})
