"""The `edgeproj` command line: one module per verb, assembled in `app.py`."""
