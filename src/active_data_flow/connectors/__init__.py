"""Connectors: memory, JSON Lines and CSV in the core; SQLAlchemy behind its extra."""
