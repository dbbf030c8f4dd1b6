"""Every bound that refuses a user's request, declared once: its value, why it has that value,
and the environment variable that moves it where one exists (parsed where the bound is
checked). The thresholds at which `tfx predict` only warns about an input live with those
checks (deploy/input_checks.py).

Two kinds of bound: guards on what a user asks for (a typo must not ask for a 74 GB cache),
and ceilings on what a file may declare (a corrupt or hostile checkpoint or ONNX model must
not make tfx allocate gigabytes). A ceiling is never below the guard it sits over, so
whatever `tfx fit` accepted, every later command loads.
"""

from __future__ import annotations

# --- Image side in pixels (--image-size; a model's input size) --------------------------
# The architectures downsample by 8 or more before their first pooled block: a smaller input
# leaves nothing for the network to see.
MIN_IMAGE_SIZE = 8
# The largest --image-size fit, data, evaluate and export accept by default: over 3x the
# paper's largest (Retina, 587 px), so a typo cannot ask for a 74 GB image cache.
DEFAULT_MAX_IMAGE_SIZE = 2048
MAX_IMAGE_SIZE_ENV = "TFX_MAX_IMAGE_SIZE"  # raises DEFAULT_MAX_IMAGE_SIZE, up to the ceiling
# The largest input side a checkpoint or exported model may declare, and the most that
# TFX_MAX_IMAGE_SIZE may raise the guard to. Loading checks this ceiling, not the guard
# (which depends on the environment of the machine that trained): a model trained at any size
# fit accepted loads everywhere. One 8192 px RGB image is 768 MiB as float32 — beyond it a
# declared size is a broken file, not a model.
IMAGE_SIZE_CEILING = 8192

# --- Source images -----------------------------------------------------------------------
# Images above this many pixels (width x height) are refused from their header, before
# decoding: a decompression bomb. Pillow's own default limit (Image.MAX_IMAGE_PIXELS).
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
MAX_IMAGE_PIXELS_ENV = "TFX_MAX_IMAGE_PIXELS"
# The most TFX_MAX_IMAGE_PIXELS may raise that limit to: 2**32 pixels (a 65536 x 65536 image,
# 12 GiB as decoded RGB) — far beyond any radiograph or fundus photo; a larger number is a typo.
IMAGE_PIXELS_CEILING = 2**32

# --- Seeds ---------------------------------------------------------------------------------
# Every seed a user gives (fit, evaluate, figures, similarity): numpy's seed range. Larger
# numbers overflowed torch's manual_seed (after the per-block offsets) as an internal error.
MAX_SEED = 2**32 - 1

# --- What a model may ask to build ---------------------------------------------------------
# Far above any real medical-imaging model; fit refuses more input channels than this, so
# every checkpoint it writes loads.
MAX_IN_CHANS = 64
MAX_CLASSES = 100_000

# --- A `tfx reproduce` profile ------------------------------------------------------------
# Seeds per part: the paper trains 3 to 5; each seed is a training run of every architecture x
# init, so 100 is already thousands of runs, and a larger count is a typo (a profile with
# seeds: 1000000000 once made `--report-only` build a plan of over 2 GB).
MAX_STUDY_SEEDS = 100
# Images the representations part feeds through each checkpoint (the paper's CCA uses a few
# thousand); the activations of every block are held for all of them.
MAX_REPRESENTATION_SAMPLES = 100_000
# A profile is a short YAML plan (the paper's is 4 KiB); a larger file is not one.
MAX_PROFILE_BYTES = 1024 * 1024

# --- `tfx serve` requests (--max-images, --max-file-mb, --max-request-mb, --max-concurrency) --
# Images in one request: predict's default batch, so that one request is one model run.
SERVE_MAX_IMAGES = 32
# Largest uploaded file and request body, in MB of 2**20 bytes: a full-resolution fundus JPEG
# is 2-8 MB, a chest radiograph DICOM up to ~30 MB. Both are held in memory, never spooled to
# disk, so these bound the server's memory per request.
SERVE_MAX_FILE_MB = 50
SERVE_MAX_REQUEST_MB = 200
# Prediction requests admitted at once (receiving, waiting or running); the next one is
# answered 503 with Retry-After. With the defaults, at most 8 x 200 MB of uploads in memory.
SERVE_MAX_CONCURRENCY = 8
# An upload that takes longer than this to arrive is cut off (a stalled client must not hold
# a slot for ever).
SERVE_BODY_TIMEOUT_S = 60.0
