"""StreamingEffect: real-time human-centric video effects."""

__version__ = "0.1.0"
