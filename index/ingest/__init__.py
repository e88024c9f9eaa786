"""The ingest wing: a docs folder (or fetched pages) into an index version. ``load`` and
``formats`` read the articles, ``clean``, ``meta`` and ``chunk`` make their passages
(``describe``), ``embed`` makes their vectors, ``pipeline`` (a build) and ``delta`` (an update
of a large index) write them through ``index.storage``; ``distributed`` does the describing
and embedding on a Ray cluster, ``fetch`` downloads pages, ``builder`` is what front ends call."""
