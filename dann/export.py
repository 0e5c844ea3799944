"""`python -m dann.export run_dir=PATH`: a finished run's classifier, ready to serve without `dann`.

Writes `<run_dir>/export/saved_model`, a SavedModel whose `serving_default` signature takes
raw inputs of any batch size, uint8 images `(batch, height, width, channels)` as the run's
preprocessing produces them (or float32 vectors for non-image data), and returns
`{"probabilities": (batch, num_classes)}`: the run's normalisation is inside. Beside it,
`model.keras`, the Keras model (normalised inputs, logits out). Loading needs TensorFlow
only:

    serve = tf.saved_model.load("export/saved_model").signatures["serving_default"]
    probabilities = serve(images=tf.constant(uint8_images))["probabilities"]
"""

from __future__ import annotations

from pathlib import Path

import hydra
import keras
import tensorflow as tf
from omegaconf import DictConfig

from dann.runs import EXPORT_DIR, load_config, load_model, load_preprocessing


def export_run(run_dir: str | Path) -> Path:
    """Writes the SavedModel and `.keras` file of the finished run `run_dir`; returns the SavedModel's path."""
    run_dir = Path(run_dir)
    model = load_model(run_dir)
    preprocessing = load_preprocessing(load_config(run_dir))
    if preprocessing is not None:
        spec, normalize = tf.TensorSpec((None, *preprocessing.input_shape), tf.uint8), preprocessing.normalize
    else:  # vectors, already float32: the model's own input shape
        spec, normalize = tf.TensorSpec(model.feature_extractor.inputs[0].shape, tf.float32), tf.identity

    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = model(normalize(images), training=False)
        return {"probabilities": tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serve, input_signature=[tf.TensorSpec.from_spec(spec, name="images")])
    export_dir = run_dir / EXPORT_DIR
    archive.write_out(str(export_dir / "saved_model"), verbose=False)
    model.save(export_dir / "model.keras")
    return export_dir / "saved_model"


@hydra.main(version_base="1.3", config_path="../configs", config_name="export")
def main(cfg: DictConfig) -> None:
    print(export_run(cfg.run_dir))


if __name__ == "__main__":
    main()
