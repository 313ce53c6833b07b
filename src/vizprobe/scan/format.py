"""The scan run directory, format `vizprobe-scan` version 1.

    RUN_DIR/
      scan.json          model, weights, preprocessing, layers, image root, status, package version
      images.txt         one image path per line, relative to the image root (row order of the arrays)
      acts/LAYER.npy     float32 (images x channels), the spatial-mean activation; NaN for skipped images
      status.npy         uint8 per image: 0 pending, 1 scanned, 2 skipped (unreadable)
      progress.json      {"done": n}: images [0, n) are committed; a resumed scan starts at n
      skipped.tsv        path <TAB> reason, for each skipped image
      topk/LAYER.npz     top/bottom `top_k` image indices and activations per channel (written at the end)
      directions/NAME.npy|npz  copies of the directions sets of direction layers (`LAYER:NAME`), recorded in
                         scan.json `directions` with their sha256, so later stages need not be told them again

Arrays are `.npy` files opened memory-mapped, so collections of millions of images fit on disk.
"""

FORMAT = "vizprobe-scan"
VERSION = 1
PENDING, SCANNED, SKIPPED = 0, 1, 2

SCAN_JSON = "scan.json"
IMAGES_TXT = "images.txt"
ACTS_DIR = "acts"
STATUS_NPY = "status.npy"
PROGRESS_JSON = "progress.json"
SKIPPED_TSV = "skipped.tsv"
TOPK_DIR = "topk"
DIRECTIONS_DIR = "directions"
