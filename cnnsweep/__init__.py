"""cnnsweep."""
