"""Face detection: one interface (`FaceDetector`), named detectors in a registry, and cropping.

`haar` (the default, OpenCV's cascade), `blazeface` and `blazeface-full` (MediaPipe's BlazeFace
models, whose weights `edge-fer detectors fetch NAME` brings). The pipeline, tracking and
cropping depend on the interface only.
"""

from edge_fer.detector.base import (LANDMARK_NAMES, Box, CropTransform, DetectedFace,
                                    DetectorOptions, FaceDetector)
from edge_fer.detector.crop import (crop_detected, crop_face, crop_face_levelled, expand_box,
                                   roll_degrees)
from edge_fer.detector.haar import HaarFaceDetector, default_cascade_path
from edge_fer.detector.blazeface import BlazeFaceDetector, BlazeFaceFull, BlazeFaceShort
from edge_fer.detector.registry import (DEFAULT_DETECTOR, DETECTORS, DetectorSpec, create_detector,
                                        detector_names, get_spec)

__all__ = ["Box", "BlazeFaceDetector", "BlazeFaceFull", "BlazeFaceShort", "CropTransform",
           "DEFAULT_DETECTOR", "DETECTORS", "DetectedFace", "DetectorOptions", "DetectorSpec",
           "FaceDetector", "HaarFaceDetector", "LANDMARK_NAMES", "create_detector", "crop_detected",
           "crop_face",
           "crop_face_levelled", "default_cascade_path", "detector_names", "expand_box",
           "get_spec", "roll_degrees"]
