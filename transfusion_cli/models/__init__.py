"""Models: block naming, checkpoints, pretrained and Gabor weights, the model zoo, filters."""
