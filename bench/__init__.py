"""Benchmarks of the Klaviyo integration against a local fake upstream (``make bench``)."""
