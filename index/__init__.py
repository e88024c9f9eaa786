"""Indexing: load articles, clean them, chunk, embed and store in a FAISS index."""
