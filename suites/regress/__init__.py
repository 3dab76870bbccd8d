"""Regression verdicts: two runs compared cell by cell (``verdicts``), the A/A calibration of
those verdicts on this machine (``calibration``), and the history of runs (``history``).
Rendering is :mod:`convbench.reports` (``compare``, ``calibration``, ``history``)."""
