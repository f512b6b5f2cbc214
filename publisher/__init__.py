"""publisher: keep a publication's articles, publish its feeds, send its email digests.

`Publication` is the library's centre: the CLI, the web app and the timetable all call it.
"""

__version__ = "0.1.0"

# modules imported below read __version__, so it comes first
from publisher.publication import Publication

__all__ = ["Publication", "__version__"]
