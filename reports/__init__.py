"""How results are shown: tables (``tables``), Markdown/terminal (``markdown``), HTML (``html``),
PNG plots (``plots``), assembled by ``build.write_report``; run comparison and history live in
``compare`` and ``history``."""
