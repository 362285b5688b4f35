"""Pure numpy/OpenCV/scikit-learn core of partsynth: skeleton, dataset readers, label
sets and label I/O, metrics, manifests and the synthetic demo set.

Imports neither torch nor prefect.  Array conventions (see :mod:`pipeline.skeleton` and
:mod:`pipeline.labels`): keypoints float32 (J, 3) x, y in pixels and v in {0, 1, 2},
missing joints NaN with v = 0; label maps uint8 (H, W), 0 background, 255 ignore;
sizes are (h, w).
"""
