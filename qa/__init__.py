"""Query layer: retrieve cited passages for a question."""
