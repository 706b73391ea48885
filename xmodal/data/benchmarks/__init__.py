"""Readers and writers of benchmark annotation files in their official on-disk layouts, one module per benchmark."""
