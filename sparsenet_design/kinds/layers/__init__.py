"""Layer kinds: torch.nn's layers, and layers of other libraries named by dotted path."""
