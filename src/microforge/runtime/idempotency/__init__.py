"""Idempotency-Key on POST and PATCH: the header, the stores and the route handler."""
