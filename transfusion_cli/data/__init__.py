"""Datasets: bundles, splits, dataset options, image files and tables, the preprocessing cache."""
