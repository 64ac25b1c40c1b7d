"""modq: automatic moderation of classified-ad listings.

The runtime package: it receives listing events, loads photos, runs the ONNX model and
writes verdicts. It never imports torch; training lives in the separate `training` package.
"""

__version__ = "0.1.0"
