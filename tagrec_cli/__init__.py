"""tagrec: a tag-driven two-tower movie recommender."""

__version__ = "0.1.0"
