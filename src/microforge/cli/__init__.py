"""The `microforge` command line."""
