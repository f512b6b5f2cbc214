"""publisher: keeps a publication's articles, publishes feeds, and sends email digests."""

__version__ = "0.1.0"
