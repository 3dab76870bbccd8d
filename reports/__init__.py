"""How results are shown, from a run's DataFrame: tables (``tables``), Markdown/terminal
(``markdown``), HTML (``html``), PNG plots (``plots``), assembled by ``build.write_report``; the
renderings of ``convbench compare`` (``compare``), ``calibrate`` (``calibration``), ``static``
(``static_report``) and of the run history (``history``).  Imports :mod:`convbench.suites` only;
the verdicts and figures themselves are computed there."""
