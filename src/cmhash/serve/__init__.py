"""`cmhash serve`: the search service (FastAPI + uvicorn) and its web page; see :mod:`cmhash.serve.app`."""

from cmhash.serve.app import create_app

__all__ = ["create_app"]
