"""The paper's published numbers (Raghu et al. 2019), as the report shows them beside ours.

AUC in [0, 1]; steps to 0.91 test AUC on Retina read off the authors' figure; Figure 2 values
are approximate readings of the bar chart.
"""

from __future__ import annotations

# (arch, init) -> "mean ± std" text, AUC %.
TABLE1 = {
    ("resnet50", "random"): "96.4 ± 0.05", ("resnet50", "pretrained"): "96.7 ± 0.04",
    ("inception-v3", "random"): "96.6 ± 0.13", ("inception-v3", "pretrained"): "96.7 ± 0.05",
    ("cbr-large-t", "random"): "96.2 ± 0.04", ("cbr-large-t", "pretrained"): "96.2 ± 0.04",
}
TABLE1_NOTE = "the smaller CBR models are within about half a point of these"
# ResNet50 on CheXpert, AUC % per finding: (random, transfer).
TABLE2 = {
    "Atelectasis": (79.52, 79.76), "Cardiomegaly": (75.23, 74.93),
    "Consolidation": (85.49, 84.42), "Edema": (88.34, 88.89), "Pleural Effusion": (88.70, 88.07),
}
# Retina, 5,000 training images, AUC %: (random, transfer).
TABLE3 = {"resnet50": (92.2, 94.6), "cbr-large-t": (93.6, 93.9), "cbr-large-w": (93.6, 93.7)}
# Steps to exceed 0.91 test AUC on Retina.
CONVERGENCE = {
    ("resnet50", "random"): 69_069, ("resnet50", "gabor"): 25_425,
    ("resnet50-slim", "pretrained"): 8_208, ("resnet50", "pretrained"): 8_008,
    ("cbr-large-w", "random"): 104_104, ("cbr-large-w", "gabor"): 82_082,
    ("cbr-large-w", "pretrained"): 19_419,
}
# CCA similarity at the top two blocks: (pretrained vs random, random vs random).
FIGURE2 = {"resnet50": (0.24, 0.27), "inception-v3": (0.22, 0.26), "cbr-large-w": (0.36, 0.36),
           "cbr-small": (0.37, 0.38), "cbr-tiny": (0.36, 0.36)}
