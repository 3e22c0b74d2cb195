"""newsdedup: read raw news articles, clean them, tag repeated passages, write records.

The library has no Prefect import; ``flows/`` orchestrates it.
"""

__version__ = "0.2.0"
