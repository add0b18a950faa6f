"""The real-time pipeline behind `edge-fer run`: one module per stage.

`capture` (reads one of the frame sources of `sources`, one module per kind), `detect` (tracking
and the detector thread), `classify`, `output` (hands results to the sinks of `edge_fer.sinks`),
joined by the latest-frame queues of `queues` and run by `runner`.
"""

from edge_fer.pipeline.sources import CaptureOptions, Frame, PiCameraSource, open_source
from edge_fer.pipeline.runner import Pipeline, PipelineOptions, stop_on_signals
from edge_fer.pipeline.tracking import TrackerOptions

__all__ = ["CaptureOptions", "Frame", "PiCameraSource", "Pipeline", "PipelineOptions",
           "TrackerOptions", "open_source", "stop_on_signals"]
