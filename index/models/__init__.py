"""The embedding model, below both wings: its spec (``spec``), its ONNX export into an index
(``export``), the query encoder and tokenizer (``embedder``), what the CPU can do (``cpu``)."""
