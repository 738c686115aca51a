"""Stage 0, catalogues -> scenes: fetching and compositing imagery from STAC catalogues.

Empty until that work lands. It writes the analysis-ready scenes that ``smallmines map`` and the
dataset builder read, and imports nothing but the base modules (``errors``, ``bands``, ``legend``).
"""
