"""Damaged inputs handed to the commands as a user would, and what each one does: the evidence for "Bad data".

    python scripts/bad_data_drill.py                          # reads $TFDS_DATA_DIR, else ~/tensorflow_datasets
    python scripts/bad_data_drill.py --data-dir /data/tensorflow_datasets

Each case damages a copy of its input (a prepared TFDS dataset, a decoded-example cache, an
image folder, a run directory), runs one command in a fresh process and records its exit
status, the line it printed that says what happened (else its last line), what it left
behind, and whether any example was silently lost (the run's results compared with an
undamaged run's). A case passes when the command
ends as expected (exit 1 for a refusal, exit 0 for a repair), prints no traceback, its
message matches, and no example was lost. Needs `mnist` and `mnist_m` prepared in the data
directory; the read-only and full-disk cases mount a small tmpfs (root on Linux), otherwise
they are reported as skipped; the missing-dataset cases expect no network (online, the
dataset would download). Prints a Markdown table; exits 1 when a case fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

TRAIN = [
    "+experiment=mnist_m",
    "data.source_train_split='train[:512]'",
    "data.target_train_split='train[:512]'",
    "data.source_test_split='test[:1000]'",
    "data.target_test_split='test[:1000]'",
    "trainer.steps=20",
    "trainer.log_every=10",
    "trainer.eval_every=20",
    "trainer.batch_size=32",
    "trainer.deterministic=true",
    "trainer.plots=false",
    "trainer.progress=false",
    "trainer.precision=float32",
]
# Figures that measure this process rather than what was computed.
TIMINGS = ("train_seconds", "eval_seconds", "input_wait_fraction", "resumed_from_step")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


class Drill:
    """The drill's working directory: an undamaged copy of the data, and the results of an undamaged run."""

    def __init__(self, data_dir: Path, work: Path):
        self.work = work
        self.data_dir = work / "tensorflow_datasets"
        for name in ("mnist", "mnist_m/synthetic"):
            shutil.copytree(data_dir / name, self.data_dir / name)
        self.reference: dict | None = None
        self.count = 0

    def fresh(self, name: str) -> Path:
        self.count += 1
        path = self.work / f"{self.count:02d}-{name}"
        path.mkdir()
        return path

    def command(self, module: str, *overrides: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", module, *overrides], env=ENV, capture_output=True, text=True, timeout=900, cwd=cwd or self.work
        )

    def train(self, run_dir: Path, *overrides: str, data_dir: Path | None = None, cache_dir: Path | str = "null"):
        data = f"data.data_dir={data_dir or self.data_dir}"
        return self.command("dann.train", *TRAIN, data, f"cache_dir={cache_dir}", f"hydra.run.dir={run_dir}", *overrides)

    def lost_examples(self, run_dir: Path) -> str:
        """Whether the run's results differ from the undamaged run's (what was computed, not how long it took)."""
        if self.reference is None:
            reference_dir = self.fresh("undamaged-run")
            done = self.train(reference_dir / "run")
            if done.returncode:
                raise SystemExit(f"the undamaged run failed:\n{done.stderr[-3000:]}")
            self.reference = comparable(reference_dir / "run")
        if not (run_dir / "results.json").exists():
            return "no run"
        return "no" if comparable(run_dir) == self.reference else "YES: results differ from the undamaged run's"


def comparable(run_dir: Path) -> dict:
    results = json.loads((run_dir / "results.json").read_text())
    return {key: value for key, value in results.items() if key not in TIMINGS}


def last_line(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    return lines[-1] if lines else ""


def left_behind(path: Path) -> str:
    return "nothing" if not path.exists() else ", ".join(sorted(item.name for item in path.iterdir())) or "an empty directory"


@contextmanager
def small_disk(size: str, read_only_after: Callable[[Path], None] | None = None) -> Iterator[Path | None]:
    """A tmpfs of `size` (None when it cannot be mounted); with `read_only_after`, filled by it, then made read-only."""
    mount = Path(tempfile.mkdtemp(prefix="bad_data_drill_disk_"))
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True).returncode:
        mount.rmdir()
        yield None
        return
    try:
        if read_only_after is not None:
            read_only_after(mount)
            subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)
        mount.rmdir()


def cut(path: Path, keep: float = 0.5) -> None:
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(data)


def cache_entry(cache: Path, prefix: str) -> Path:
    (entry,) = cache.glob(f"{prefix}*")
    return entry


def record_file(data_dir: Path, name: str, split: str) -> Path:
    (path,) = data_dir.glob(f"{name}/*/{name.split('/')[0]}-{split}.tfrecord-*")
    return path


def png(pixels: np.ndarray) -> bytes:
    import tensorflow as tf

    return tf.io.encode_png(pixels).numpy()


def write_images(root: Path, classes=("cat", "dog"), per_class=12) -> Path:
    import tensorflow as tf

    rng = np.random.default_rng(len(str(root)))
    for index, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for image in range(per_class):
            pixels = np.clip(rng.integers(0, 60, (24, 24, 3)) + 60 * index, 0, 255).astype(np.uint8)
            (root / name / f"{image:03d}.jpg").write_bytes(tf.io.encode_jpeg(pixels).numpy())
    return root


FOLDERS = ["data=image_folders", "model=mnist_cnn", "data.preprocessing.image_size=[28,28]", *TRAIN[5:]]


def case(name: str, done, expect_exit: int, message: str, left: str, lost: str = "n/a") -> dict:
    if done is None:
        return {"case": name, "exit": "-", "message": "skipped: mounting a tmpfs needs root on Linux", "left": "-", "lost": "-", "ok": None}
    output = done.stderr + done.stdout
    said = next((line for line in output.splitlines() if re.search(message, line)), None)
    ok = done.returncode == expect_exit and "Traceback" not in output and said is not None and not lost.startswith("YES")
    return {"case": name, "exit": done.returncode, "message": said or last_line(done), "left": left, "lost": lost, "ok": ok}


def cases(drill: Drill) -> Iterator[dict]:
    # A decoded-cache entry damaged on disk: found before use, deleted, saved again; the run equals an undamaged one.
    for name, damage in (
        ("decoded-cache shard cut in half", lambda entry: cut(max(entry.rglob("*.snapshot"), key=lambda p: p.stat().st_size))),
        ("decoded-cache byte flipped", lambda entry: flip(max(entry.rglob("*.snapshot"), key=lambda p: p.stat().st_size))),
        ("decoded-cache part deleted", lambda entry: shutil.rmtree(entry / "000000")),
        ("decoded cache of another format", lambda entry: (entry / "manifest.json").write_text('{"format": 1, "parts": []}')),
    ):
        work = drill.fresh("cache")
        drill.train(work / "first", cache_dir=work / "cache")
        damage(cache_entry(work / "cache", "mnist_m-test"))
        done = drill.train(work / "run", cache_dir=work / "cache")
        yield case(
            name, done, 0, r"was damaged \(.*\): deleted; saving it again", left_behind(work / "run"), drill.lost_examples(work / "run")
        )

    work = drill.fresh("read-only-cache")
    drill.train(work / "first", cache_dir=work / "cache")

    def damaged_copy(mount: Path) -> None:
        shutil.copytree(work / "cache", mount / "cache")
        cut(max(cache_entry(mount / "cache", "mnist_m-test").rglob("*.snapshot"), key=lambda p: p.stat().st_size))

    with small_disk("64m", read_only_after=damaged_copy) as mount:
        done = None if mount is None else drill.train(work / "run", cache_dir=mount / "cache")
        yield case(
            "damaged cache on a read-only disk", done, 1, r"cannot be deleted .*rm -rf .*data.cache_dir=null", left_behind(work / "run")
        )

    work = drill.fresh("full-disk-cache")
    with small_disk("1m") as mount:
        done = None if mount is None else drill.train(work / "run", cache_dir=mount)
        lost = "n/a" if mount is None else drill.lost_examples(work / "run")
        yield case("cache directory on a full disk", done, 0, r"Not caching decoded examples: .* is full", left_behind(work / "run"), lost)

    for name, damage in (("TFRecord file: a byte flipped", flip), ("TFRecord file: cut in half", cut)):
        work = drill.fresh("tfrecord")
        shutil.copytree(drill.data_dir, work / "data")
        damage(record_file(work / "data", "mnist", "test"))
        for cache in ("null", work / "cache"):
            done = drill.train(work / "run", data_dir=work / "data", cache_dir=cache)
            where = "without" if cache == "null" else "with"
            yield case(
                f"{name} ({where} a cache)",
                done,
                1,
                r"mnist-test.tfrecord.* Rebuild it: rm -rf .* python -m dann.data mnist",
                left_behind(work / "run"),
            )

    work = drill.fresh("image-folders")
    source, target = write_images(work / "source"), write_images(work / "target")
    cut(target / "dog" / "003.jpg")
    folders = [*FOLDERS, f"data.source={source}", f"data.target={target}"]
    done = drill.command("dann.train", *folders, f"hydra.run.dir={work / 'run'}")
    yield case("truncated JPEG in an image folder", done, 1, r"1 image\(s\) cannot be read: .*003.jpg \(jpeg", left_behind(work / "run"))
    done = drill.command("dann.train", *folders, "data.skip_unreadable=true", f"hydra.run.dir={work / 'skipping'}")
    listed = (work / "skipping" / "skipped_files.txt").read_text() if (work / "skipping" / "skipped_files.txt").exists() else ""
    lost = "no: 1 skipped, listed in skipped_files.txt" if "003.jpg" in listed else "YES: not listed"
    yield case("the same, data.skip_unreadable=true", done, 0, r"skipped 1 unreadable input files", left_behind(work / "skipping"), lost)
    for path in (target / "dog").iterdir():
        path.unlink()
    done = drill.command("dann.train", *folders, f"hydra.run.dir={work / 'empty'}")
    yield case("an empty class folder", done, 1, r"holds no images: add some, or remove the folder", left_behind(work / "empty"))
    shutil.rmtree(target / "dog")
    done = drill.command("dann.train", *folders, f"hydra.run.dir={work / 'classes'}")
    yield case("a class missing from the target", done, 1, r"different classes", left_behind(work / "classes"))

    work = drill.fresh("labels-file")
    manual = work / "data" / "downloads" / "manual" / "mnist_m"
    (manual / "mnist_m_train").mkdir(parents=True)
    for index in range(4):  # four images, three labels
        (manual / "mnist_m_train" / f"{index:08d}.png").write_bytes(png(np.full((32, 32, 3), 50 * index, np.uint8)))
    (manual / "mnist_m_train_labels.txt").write_text("".join(f"{index:08d}.png {index}\n" for index in range(3)))
    done = drill.command("dann.data", "mnist_m/original", "--data-dir", str(work / "data"))
    yield case("a labels file with a missing line", done, 1, r"labels.txt has no line for 1 of the 4 images", "-")

    code = (
        "import dataclasses, numpy as np, tensorflow as tf, dann\n"
        "from dann.config import build_algorithm, build_datasets, build_model, compose_config, trainer_settings\n"
        "cfg = compose_config(['+experiment=moons', 'trainer.steps=20', 'trainer.eval_every=20', 'trainer.log_every=10'])\n"
        "datasets = build_datasets(cfg)\n"
        "x, y = (np.stack(part) for part in zip(*datasets.source_train.as_numpy_iterator()))\n"
        "x[5] = np.nan\n"
        "datasets = dataclasses.replace(datasets, source_train=tf.data.Dataset.from_tensor_slices((x, y)))\n"
        "algorithm = build_algorithm(cfg, build_model(cfg, datasets))\n"
        "try:\n    dann.fit(algorithm, datasets, trainer_settings(cfg))\n"
        "except dann.data.CorruptDataError as error:\n    raise SystemExit(f'CorruptDataError: {error}')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=600)
    yield case("NaN inputs handed to dann.fit", done, 1, r"source_train: 1 example\(s\) have NaN or infinite inputs, e.g. example 5", "-")

    work = drill.fresh("run-directories")
    (work / "foreign").mkdir()
    (work / "foreign" / "notes.txt").write_text("not a run")
    shutil.copytree(drill.work / "01-undamaged-run" / "run", work / "unfinished")  # trained first, by main
    for item in ("model.keras", "results.json", "metrics.jsonl"):
        path = work / "unfinished" / item
        if path.exists():
            path.unlink()
    for command, run_dir, expected in (
        ("dann.evaluate", work / "missing", r"config.yaml does not exist"),
        ("dann.export", work / "foreign", r"model.keras does not exist"),
        ("dann.evaluate", work / "unfinished", r"model.keras does not exist: is .* a finished"),
        ("dann.health", work / "unfinished", r"metrics.jsonl does not exist"),
        ("dann.plot", work / "foreign", r"config.yaml does not exist"),
    ):
        extra = ["dataset=mnist_m"] if command == "dann.evaluate" else []
        done = drill.command(command, f"run_dir={run_dir}", *extra)
        yield case(f"{command} on a run directory: {run_dir.name}", done, 1, expected, left_behind(run_dir))
    done = drill.command("dann.evaluate", f"run_dir={work / 'unfinished'}")
    yield case("dann.evaluate without dataset=", done, 1, r"dataset is not set: pass dataset=\.\.\.", "-")
    for command in ("dann.train", "dann.benchmark", "dann.diagnose"):
        run_dir = [f"hydra.run.dir={work / 'run'}"] if command == "dann.train" else []  # the others write no run directory
        done = drill.command(command, "+experiment=mnist_m", f"data.data_dir={work / 'no-data'}", *run_dir)
        left = left_behind(work / "run") if run_dir else "-"
        yield case(f"{command}: a dataset neither prepared nor downloadable", done, 1, r"MissingDataError: mnist is not prepared", left)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
    parser.add_argument("--data-dir", type=Path, default=Path(default).expanduser(), help="a TFDS data directory with mnist and mnist_m")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bad_data_drill_") as work:
        drill = Drill(args.data_dir.expanduser(), Path(work))
        drill.lost_examples(Path(work) / "none")  # trains the undamaged run first
        rows = []
        print("| case | exit | message (the expected line, else the last) | left behind | examples lost | verdict |")
        print("| --- | --- | --- | --- | --- | --- |")
        for row in cases(drill):
            verdict = "skipped" if row["ok"] is None else "pass" if row["ok"] else "FAIL"
            # Without the log line's time and logger, or the warning's source line.
            message = re.sub(r"^\[[^]]*\]\[[^]]*\]\[[^]]*\] - |^\S+:\d+: (?=\w+Warning: )", "", row["message"])
            message = re.sub(r"/\S*bad_data_drill_disk_\w+", "<disk>", message.replace(str(work), "<tmp>")).replace("|", "\\|")
            message = message if len(message) <= 240 else message[:237] + "..."
            print(f"| {row['case']} | {row['exit']} | {message} | {row['left']} | {row['lost']} | {verdict} |", flush=True)
            rows.append(row)
    failed = [row["case"] for row in rows if row["ok"] is False]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} cases as expected" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
