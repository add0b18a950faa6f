"""Keeping the native libraries' chatter off the user's terminal.

TensorFlow and the TFLite runtimes print from C++ straight to the process's stderr (file
descriptor 2), where neither Python's logging nor `TF_CPP_MIN_LOG_LEVEL` reaches all of it:
TensorFlow's messages from before its log is initialised (the oneDNN note, "Could not find cuda
drivers"), the `cuInit` error of a machine without a GPU, the converter's `fully_quantize: ...`
line, and TFLite's `INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`, which no runtime
(ai-edge-litert, tflite-runtime, tensorflow.lite) lets a caller switch off. FFmpeg and OpenCV
print the same way while a video or stream is opened and read (`moov atom not found`, `[tcp @
0x...] Connection refused`, OpenCV's `[ WARN:0@...]` lines), beside the one line the capture's
own error already says.

`native_output_filtered()` points descriptor 2 at a temporary file around the calls that print
them and afterwards writes back every line that is not known noise, so a real message is only
delayed, never lost; the noise goes to this module's logger at INFO (`edge-fer -v` shows it).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import threading
from contextlib import contextmanager
from typing import Iterator

log = logging.getLogger(__name__)

#: Lines that say nothing the user can act on.
NOISE = re.compile("|".join([
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"^[IW]\d{4} [\d:.]+ +\d+ \S+\.cc:\d+\] ",              # absl INFO/WARNING records
    r"^E\d{4} [\d:.]+ +\d+ cuda_\w+\.cc:\d+\] failed call to cuInit",
    r"^To enable the following instructions: .* rebuild TensorFlow",
    r"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.",
    r"^INFO: Initialized TensorFlow Lite runtime\.",
    r"^fully_quantize: \d+, inference_type: \d+, input_inference_type: \w+, output_inference_type: \w+",
    # FFmpeg's own log (`[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d0] moov atom not found`, `[tcp @ 0x7f]
    # Connection to tcp://... failed: Connection refused`): the capture says what went wrong
    # in its own words, and OpenCV leaves FFmpeg printing errors to stderr.
    r"^\[[\w ,:./-]+ @ (?:0x)?[0-9a-fA-F]+\] ",
    # OpenCV's log (`[ WARN:0@10.0] global cap_ffmpeg_impl.hpp:453 _opencv_ffmpeg_interrupt_callback
    # Stream timeout triggered after 10000 ms`).
    r"^\[ ?(?:FATAL|ERROR|WARN|INFO|DEBUG|VERBOSE) ?:\d+(?:@[\d.]+)?\] ",
]))

# Descriptor 2 belongs to the whole process: one redirection at a time.
_lock = threading.RLock()
_depth = 0
_capture = None


@contextmanager
def native_output_filtered() -> Iterator[None]:
    """Drop the known native noise printed to stderr inside the block; keep everything else."""
    global _depth
    with _lock:
        if _depth:  # already inside: the outer block filters
            _depth += 1
            try:
                yield
            finally:
                _depth -= 1
            return
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no stderr at all (a detached daemon): nothing to filter
            yield
            return
        global _capture
        if _capture is None or _capture.closed:
            # One file, emptied after each block: the capture stage filters every frame's read.
            _capture = tempfile.TemporaryFile()
        capture = _capture
        os.dup2(capture.fileno(), 2)
        _depth = 1
        try:
            yield
        finally:
            _depth = 0
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            if os.fstat(capture.fileno()).st_size:  # nothing printed: nothing to read back
                capture.seek(0)
                text = capture.read().decode("utf-8", errors="replace")
                capture.seek(0)
                capture.truncate()
                _replay(text)


def _replay(text: str) -> None:
    kept = []
    for line in text.splitlines(keepends=True):
        if NOISE.search(line):
            log.info("%s", line.rstrip())
        else:
            kept.append(line)
    if kept:
        try:
            sys.stderr.write("".join(kept))
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
