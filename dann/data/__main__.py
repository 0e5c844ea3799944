"""`python -m dann.data [NAME ...] [--data-dir DIR] [--mirror DIR]`: prepares TFDS datasets before any run.

Without names: `mnist` and `mnist_m` (synthetic), what the reference experiment and the test
suite read. Each is copied from `--mirror` (another TFDS data directory) where it is prepared
there, else built or downloaded (`dann.data.prepare_datasets`). A missing or broken input
ends with one line saying what to do and exit status 1.
"""

from __future__ import annotations

import argparse

from dann.config import exit_on_user_error
from dann.data.prepare import prepare_datasets

DEFAULT_DATASETS = ["mnist", "mnist_m"]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m dann.data", description=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("names", nargs="*", default=DEFAULT_DATASETS, help="TFDS names, e.g. mnist mnist_m mnist_m/original")
    parser.add_argument("--data-dir", help="the TFDS data directory (default: $TFDS_DATA_DIR, else ~/tensorflow_datasets)")
    parser.add_argument("--mirror", help="a TFDS data directory to copy prepared datasets and manual downloads from")
    args = parser.parse_args()
    with exit_on_user_error():
        builders = prepare_datasets(args.names, args.data_dir, args.mirror)
    for name, builder in zip(args.names, builders):
        counts = ", ".join(f"{split} {info.num_examples:,}" for split, info in sorted(builder.info.splits.items()))
        print(f"{name}: {builder.data_dir} ({counts})")


if __name__ == "__main__":
    main()
