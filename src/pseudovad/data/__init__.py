"""Footage in, arrays out: sources, the frame store, labels, clip datasets, synthetic footage."""
