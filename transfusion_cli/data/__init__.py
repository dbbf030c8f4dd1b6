"""Datasets: bundles, splits, dataset options, image files and tables, the preprocessing cache."""

# The splits of every DatasetBundle, in order (declared here, free of numpy and torch, so that
# the command line can offer them as choices).
SPLITS = ("train", "val", "test")
