"""The scan run directory, format `vizprobe-scan` version 2 (version 1 had no `keep_activations`, no moments).

    RUN_DIR/
      scan.json          model, weights, preprocessing, layers, image root, status, package version
      images.txt         one image path per line, relative to the image root (row order of the arrays)
      acts/LAYER.npy     float32 (images x channels), the spatial-mean activation; NaN for skipped images
                         (only when scan.json `keep_activations` is true, the default)
      status.npy         uint8 per image: 0 pending, 1 scanned, 2 skipped (unreadable)
      progress.json      {"done": n}: images [0, n) are committed; a resumed scan starts at n
      skipped.tsv        path <TAB> reason, for each skipped image
      topk/LAYER.npz     per channel: top/bottom `top_k` image indices and activations (`{top,bottom}_{index,value}`,
                         channels x k), and `count`, `sum`, `sum_sq` of its activations (mean and std without
                         the matrix); written at the end
      topk/running.npz   without `keep_activations`: the running top/bottom-k and sums of every layer (keys
                         `LAYER.npy/...`) and `done`, saved at every commit, removed at the end
      directions/NAME.npy|npz  copies of the directions sets of direction layers (`LAYER:NAME`), recorded in
                         scan.json `directions` with their sha256, so later stages need not be told them again

Arrays are `.npy` files opened memory-mapped, so collections of millions of images fit on disk.
"""

FORMAT = "vizprobe-scan"
VERSION = 2
READABLE_VERSIONS = (1, 2)
PENDING, SCANNED, SKIPPED = 0, 1, 2

SCAN_JSON = "scan.json"
IMAGES_TXT = "images.txt"
ACTS_DIR = "acts"
STATUS_NPY = "status.npy"
PROGRESS_JSON = "progress.json"
SKIPPED_TSV = "skipped.tsv"
TOPK_DIR = "topk"
RUNNING_NPZ = "topk/running.npz"
DIRECTIONS_DIR = "directions"
