"""A package of user code outside xmodal that recipes name by dotted path (tests)."""
