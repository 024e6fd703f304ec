"""INT8 calibration and post-training quantization through each engine's own quantizer.

- `dataset`: calibration images, preprocessed exactly as inference does, with a content hash and the
  overlap check against the evaluation images;
- `cache`: calibration results on disk, keyed by model, images, method, preprocessing and versions;
- `exclusions`: the layers kept in float (the detection head's output layers and decode tail by default);
- `request`: what every engine's quantizer takes and returns;
- one module per engine: `ort`, `openvino`, `tflite`, `ncnn`; `sensitivity`: per-layer ranking.

Nothing here converts between formats (that is converters/, which calls these quantizers).
"""
