"""Errors meant for users. Front ends print ``str(error)`` as one line and exit non-zero."""


class QAError(Exception):
    """Base class: the message says what is wrong and what to do next."""


class DocsError(QAError):
    """The docs folder is missing, empty or unreadable."""


class ModelError(QAError):
    """The embedding model is missing or its files do not match the expected hash."""


class IndexMissing(QAError):
    """No index exists at the given directory."""


class IndexDamaged(QAError):
    """Index files are truncated or corrupt."""


class IndexStale(QAError):
    """The index was built with another model, dimension, chunking or format."""


class IndexOutdated(IndexStale):
    """The index has an older on-disk format of the same model: an update rebuilds it
    without re-embedding."""


class IndexLocked(QAError):
    """Another process is writing the index."""


class QuestionError(QAError):
    """The question is empty or unusable."""
