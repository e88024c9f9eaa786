"""The storage wing: the index on disk. ``layout`` (versions, CURRENT, the writer's lock and
readers' leases), ``rows`` (what a version's database holds, and its writer), ``manifest``,
``publish`` (writing, switching and pruning versions), ``reader`` (``Store``), the vector and
keyword indexes (``vectors``, ``lexical``), and the two stores kept beside an index
(``feedback_store``, ``watch_store``). The only modules that run SQL."""
