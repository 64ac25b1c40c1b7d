"""Banned-content detectors that run on the photos the worker has already decoded."""
