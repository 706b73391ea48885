"""Readers and writers for benchmark datasets in their official on-disk formats."""
