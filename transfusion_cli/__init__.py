"""tfx: find out what transfer learning from ImageNet really buys on your medical images."""

__version__ = "0.1.0"
