"""The page toolkit: what a report, an analysis or a search page is made of, and how it is written.

A page is a list of blocks (:mod:`.blocks`: headings, text, bullet lists, key-value facts, code, tables of
:class:`~.blocks.Cell` s, figures saved by :mod:`.figures`), decided once and written twice (:mod:`.render`): as
Markdown for reading in a repository or editor, and as one self-contained HTML file (figures embedded as data URIs,
inline CSS, no JavaScript, no network). It knows nothing of studies, stores, configs or pandas, so the study report
(:mod:`mtlab.report`), the analysis pages (:mod:`mtlab.analysis`) and the search report (:mod:`mtlab.search`) all
build on it, and it imports nothing heavy (matplotlib only inside :func:`~.figures.save_figure`'s caller's figure).
"""
