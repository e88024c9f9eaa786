"""The index: ``ingest/`` turns a docs folder into index versions, ``storage/`` is the index on
disk and reads it; below both, the model (``models/``), the docs folder as files (``docs``),
article URLs (``urls``), durable writes (``disk``) and the errors meant for users (``errors``)."""
