"""xmodal: Vision + X multimodal learning, with methods that follow the nature of the data."""

__version__ = "0.1.0"
