"""microforge: one domain spec in, FastAPI microservices out."""

__version__ = "0.1.0"
