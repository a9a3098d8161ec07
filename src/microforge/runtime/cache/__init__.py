"""Entity caching: in-process stores, shared backends, invalidation and locks."""
