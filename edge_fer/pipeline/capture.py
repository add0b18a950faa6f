"""Frame sources (Pi camera, USB camera, video file, image folder, stream) and the capture stage.

Sources only know how to open, read and close; the stage around them owns pacing, bounds
(`--max-frames`, `--duration`) and reconnecting live sources with backoff, so every source
behaves the same way in those respects.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import re
import sys
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edge_fer.errors import InputError, SourceError, UsageError
from edge_fer.images import DEFAULT_MAX_PIXELS
from edge_fer.pipeline.queues import LatestQueue
from edge_fer.pipeline.stage import Stage
from edge_fer.pipeline.stats import PipelineStats
from edge_fer.quiet import native_output_filtered

log = logging.getLogger(__name__)

#: Frame rate assumed for pacing when a file does not say (or says nonsense).
FALLBACK_FPS = 30.0


@dataclass
class CaptureOptions:
    """Where frames come from and how many to take."""

    camera: str | None = None
    """`pi`, `usb:N` or a bare index N; None when `source` is given."""
    source: str | None = None
    """A video file, a folder of images, or a stream URL (rtsp://, http://, ...)."""
    width: int = 640
    """Requested camera frame width (cameras only; files keep their size)."""
    height: int = 480
    """Requested camera frame height."""
    fps: float | None = None
    """Camera frame rate (default 30); for files and folders, the `realtime` pacing rate
    (default: the file's own rate, 30 for folders)."""
    realtime: bool = False
    """Pace a file or folder at its frame rate and drop frames the pipeline cannot keep up with,
    as a camera would; otherwise every frame is processed as fast as possible."""
    max_frames: int | None = None
    """Stop after reading this many frames."""
    duration: float | None = None
    """Stop after this many seconds."""
    lores_width: int = 320
    """Pi camera: width of the low-resolution stream whose Y plane feeds detection."""
    reconnect_initial_s: float = 0.5
    """Live sources: first wait before reconnecting; it doubles after each failed attempt."""
    reconnect_max_s: float = 10.0
    """Live sources: the longest wait between reconnection attempts."""
    reconnect_timeout_s: float | None = 30.0
    """Live sources: how long one that is down at the start, or lost during the run, is retried
    before the run fails; None keeps trying until stopped. A camera or a network stream often
    comes up a little after a kiosk's service, and a stream drops for a few seconds."""
    open_timeout_s: float = 10.0
    """Streams: how long opening or reading may block."""
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    """Image folders: images of more pixels are skipped, checked from the header before
    decoding (None: no limit)."""
    loop: bool = False
    """Files and folders: start again from the first frame at the end, until stopped (or
    `max_frames`, `duration`); cameras and streams ignore it."""


@dataclass
class Frame:
    """One captured frame, as it travels from capture to detection."""

    index: int
    """Sequence number at capture (gaps downstream are dropped frames)."""
    captured_at: float
    """time.monotonic() when the frame arrived."""
    image: np.ndarray
    """BGR uint8, H x W x 3; shared downstream and never written to."""
    gray: np.ndarray | None = None
    """A smaller grayscale view of the same scene for detection (the Pi's low-resolution Y
    plane), or None to derive it from `image`."""


class Source(ABC):
    """Something frames can be read from."""

    live = False
    """Frames arrive in real time and the source may come back after failing (cameras,
    streams); a non-live source (file, folder) ends for good."""
    fps: float | None = None
    """The source's nominal frame rate once open, if it has one."""

    @property
    @abstractmethod
    def description(self) -> str:
        """What to call the source in messages (never a password)."""

    @abstractmethod
    def open(self) -> None:
        """Open or re-open; raises SourceError with what to do about it."""

    @abstractmethod
    def read(self) -> tuple[np.ndarray, np.ndarray | None] | None:
        """(BGR or gray or BGRA image, optional detection gray), or None at the end of a
        non-live source; raises SourceError when a live source fails."""

    def close(self) -> None:
        """Release the device or file; safe to call twice."""

    def limit_open(self, seconds: float | None) -> None:
        """Let the next `open` block for at most `seconds` (None: the source's own bound), so a
        deadline such as `--source-timeout` covers an open that hangs; sources whose open does
        not block ignore it."""


def as_bgr(image: np.ndarray, where: str) -> np.ndarray:
    """`image` as H x W x 3 uint8 BGR, converting gray and BGRA; SourceError if it is no image."""
    import cv2

    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.size == 0:
        kind = getattr(image, "dtype", type(image).__name__)
        raise SourceError(f"{where} gave a frame that is not an 8-bit image ({kind})")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    raise SourceError(f"{where} gave a frame of shape {image.shape}, not an image")


def _sane_fps(value: float) -> float | None:
    return float(value) if value and math.isfinite(value) and 1.0 <= value <= 240.0 else None


def _video_capture(*args):
    """cv2.VideoCapture(*args), with what FFmpeg and OpenCV print meanwhile sent to the log."""
    import cv2

    with native_output_filtered():
        return cv2.VideoCapture(*args)


class _OpenCVSource(Source):
    """What the sources read through OpenCV's VideoCapture share."""

    _cap = None

    def read(self):
        with native_output_filtered():  # FFmpeg's decoding errors, OpenCV's timeout warnings
            ok, image = self._cap.read()
        if ok:
            return image, None
        if self.live:
            raise SourceError(f"{self.description} stopped delivering frames")
        return None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


#: What OpenCV reports as the codec (FFmpeg's codec name cut to four characters when the
#: container has no tag) of FFmpeg's text "videos": its tty demuxer renders any text file with
#: the ANSI decoder, and the bintext demuxers read .bin/.xb/.idf/.adf art, so a notes file or a
#: log given as --source plays as a few frames of drawn characters.
TEXT_CODECS = frozenset({"ansi", "bint", "xbin", "idf"})


def _fourcc(value: float) -> str:
    code = int(value) if value and math.isfinite(value) and value > 0 else 0
    return code.to_bytes(4, "little").decode("latin-1").rstrip("\0 ").lower()


class VideoFileSource(_OpenCVSource):
    """A video file read with OpenCV (FFmpeg)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def description(self) -> str:
        return f"video {self.path}"

    def open(self) -> None:
        import cv2

        if not self.path.exists():
            raise SourceError(f"video file not found: {self.path}")
        cap = _video_capture(os.fspath(self.path))
        if not cap.isOpened():
            raise SourceError(f"{self.path} is not a video OpenCV can read (damaged, or not a video)")
        codec = _fourcc(cap.get(cv2.CAP_PROP_FOURCC))
        if codec in TEXT_CODECS:
            cap.release()
            raise SourceError(f"{self.path} is text, not a video (FFmpeg would draw its "
                              f"characters as frames): give a video file, an image folder or a "
                              f"stream URL", permanent=True)
        self._cap = cap
        self.fps = _sane_fps(cap.get(cv2.CAP_PROP_FPS))
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(count) if count and math.isfinite(count) and count > 0 else None
        self.frames_read = 0

    frame_count: int | None = None
    """Frames the container says it holds, when it says (some formats only estimate it)."""
    frames_read = 0

    def read(self):
        got = super().read()
        if got is not None:
            self.frames_read += 1
            return got
        self._check_complete()
        return None

    def _check_complete(self) -> None:
        """A video whose decoding stops well before its container's frame count is damaged:
        FFmpeg gives up at the first bad stretch, and "end of source" would hide the loss."""
        expected, got = self.frame_count, self.frames_read
        if got == 0:
            raise SourceError(f"{self.path} has no frame OpenCV can decode (empty, damaged, or "
                              f"not a video)")
        # Containers that estimate the count (duration x rate) may be off by a frame or two.
        if expected is not None and got < expected - max(2, expected // 100):
            raise SourceError(f"{self.path} ended early: {got} of {expected} frames decoded "
                              f"(the file is damaged or truncated)")


class ImageFolderSource(Source):
    """The images of a folder, in name order, as frames; unreadable files are skipped."""

    def __init__(self, path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS):
        self.path = Path(path)
        self.max_pixels = max_pixels
        self._paths: list[Path] = []
        self._next = 0
        self.skipped = 0

    @property
    def description(self) -> str:
        return f"image folder {self.path}"

    def open(self) -> None:
        from edge_fer.images import iter_image_paths

        try:
            self._paths = list(iter_image_paths([self.path]))
        except InputError as exc:
            raise SourceError(str(exc)) from None
        self._next = 0

    def read(self):
        from edge_fer.images import read_image

        while self._next < len(self._paths):
            path = self._paths[self._next]
            self._next += 1
            try:
                return read_image(path, max_pixels=self.max_pixels), None
            except InputError as exc:
                # One bad file in a folder of frames must not end the run.
                self.skipped += 1
                log.warning("skipping %s", exc)
        return None


def _video_device(index: int) -> Path | None:
    return Path(f"/dev/video{index}") if sys.platform.startswith("linux") else None


class USBCameraSource(_OpenCVSource):
    """A V4L2 / USB camera opened by index with OpenCV."""

    live = True

    def __init__(self, index: int, width: int, height: int, fps: float):
        self.index = index
        self.size = (width, height)
        self.fps = fps
        self._warned_size = False

    @property
    def description(self) -> str:
        return f"camera usb:{self.index}"

    def open(self) -> None:
        import cv2

        device = _video_device(self.index)
        if device is not None and not device.exists():
            # Checked first: OpenCV would only print a warning and report "not opened".
            raise SourceError(
                f"no camera at {device}: plug in a USB camera, list them with "
                f"'v4l2-ctl --list-devices', or pick another with --camera usb:N")
        api = cv2.CAP_V4L2 if device is not None else cv2.CAP_ANY
        cap = _video_capture(self.index, api)
        if not cap.isOpened():
            raise SourceError(
                f"cannot open {self.description}: it is busy (another program is using it) or "
                f"{device or 'the device'} is not a capture device")
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
        cap.set(cv2.CAP_PROP_FPS, self.fps)
        # A driver-side queue of old frames is latency: keep one.
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._cap = cap
        got = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        if got != self.size and not self._warned_size:
            self._warned_size = True
            log.warning("%s gives %dx%d frames, not the requested %dx%d", self.description,
                        *got, *self.size)


def redact_url(url: str) -> str:
    """`url` without a password, for messages and logs."""
    return re.sub(r"//([^/@:]+):[^/@]*@", r"//\1:***@", url)


class StreamSource(_OpenCVSource):
    """A network stream (RTSP, HTTP, ...) read with OpenCV's FFmpeg backend."""

    live = True

    def __init__(self, url: str, timeout_s: float = 10.0):
        self.url = url
        self.timeout_ms = int(timeout_s * 1000)
        self._open_limit_ms: int | None = None

    def limit_open(self, seconds: float | None) -> None:
        self._open_limit_ms = None if seconds is None else max(1, int(seconds * 1000))

    @property
    def description(self) -> str:
        return f"stream {redact_url(self.url)}"

    def open(self) -> None:
        import cv2

        # Without these FFmpeg may block for minutes on a dead host: every wait has a bound.
        open_ms = min(self.timeout_ms, self._open_limit_ms or self.timeout_ms)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, open_ms,
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, self.timeout_ms]
        cap = _video_capture(self.url, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            raise SourceError(f"cannot open {self.description}: check the address, the network "
                              f"and that the stream is running")
        self._cap = cap
        self.fps = _sane_fps(cap.get(cv2.CAP_PROP_FPS))


PICAMERA2_MISSING = ("picamera2 is not installed: on Raspberry Pi OS run 'sudo apt install "
                     "python3-picamera2' (a virtual environment needs --system-site-packages to "
                     "see it)")
PICAMERA_NOT_FOUND = ("no Raspberry Pi camera found: enable it (raspi-config, or camera_auto_detect=1 "
                      "in /boot/firmware/config.txt), check the ribbon cable, and list cameras with "
                      "'rpicam-hello --list-cameras'")
PICAMERA_BUSY = ("the Pi camera is busy: another program (rpicam-*, libcamera, another edge-fer) is "
                 "using it, or its last user was killed and it is not free yet; stop that program "
                 "(list it with 'sudo fuser -v /dev/media* /dev/video*')")
PICAMERA_FAILED = ("the Pi camera failed to start: check the ribbon cable and the camera with "
                   "'rpicam-hello --list-cameras'")
#: How long a Pi camera can stay busy after its last user was killed uncleanly (other Pi projects
#: measure 10-15 s): --source-timeout's default and the service's restart delay must cover it.
PICAMERA_BUSY_CLEARS_S = 15.0


def _exception_chain(exc: BaseException) -> list[BaseException]:
    """`exc` and what it was raised from or while handling, outermost first: picamera2 wraps
    the cause of a failed constructor in RuntimeError, keeping it only as __context__."""
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def _even(v: float) -> int:
    return max(2, int(round(v / 2)) * 2)


class PiCameraSource(Source):
    """A Raspberry Pi camera through picamera2, with two streams from the same request.

    The main stream (BGR) is what sinks show and faces are cropped from; the low-resolution
    YUV420 stream's Y plane is already a small grayscale image, so detection needs no colour
    conversion and no resize. `camera` takes an open object with picamera2's API, which the
    caller owns (tests pass a fake); otherwise `factory` (picamera2.Picamera2 when None, imported
    only then) makes the camera on each open, and it is closed with the source.
    """

    live = True

    def __init__(self, width: int, height: int, fps: float, lores_width: int = 320, camera=None,
                 factory: Callable[[], object] | None = None):
        self.size = (_even(width), _even(height))
        self.fps = fps
        lw = min(lores_width or width, width)
        self.lores_size = (_even(lw), _even(lw * height / width))
        self._injected = camera
        self._factory = factory
        self._cam = None
        self._warned_size = False

    @property
    def description(self) -> str:
        return "Pi camera"

    def _create(self):
        if self._injected is not None:
            return self._injected
        factory = self._factory
        if factory is None:
            try:
                from picamera2 import Picamera2 as factory
            except ImportError:
                raise SourceError(PICAMERA2_MISSING, permanent=True) from None
        try:
            return factory()
        except Exception as exc:  # noqa: BLE001 - picamera2 raises plain exceptions; explain them
            raise SourceError(self._explain(exc)) from None

    @staticmethod
    def _explain(exc: BaseException) -> str:
        """One line for a failure to open the camera, from every error in its chain: busy (held by
        another program), absent (picamera2 indexes its list of detected cameras: an empty list
        is an IndexError), or another fault, with what libcamera said."""
        chain = _exception_chain(exc)
        said = " <- ".join(f"{type(e).__name__}: {e}" for e in chain)
        if any("busy" in str(e).lower() or getattr(e, "errno", None) == errno.EBUSY for e in chain):
            return f"{PICAMERA_BUSY} ({said})"
        if any(isinstance(e, IndexError) or "not found" in str(e).lower() for e in chain):
            return f"{PICAMERA_NOT_FOUND} ({said})"
        return f"{PICAMERA_FAILED} ({said})"

    def open(self) -> None:
        cam = self._create()
        try:
            config = cam.create_video_configuration(
                main={"size": self.size, "format": "RGB888"},
                lores={"size": self.lores_size, "format": "YUV420"},
                controls={"FrameRate": float(self.fps)})
            cam.configure(config)
            cam.start()
        except SourceError:
            raise
        except Exception as exc:  # noqa: BLE001 - picamera2 raises plain exceptions; explain them
            self._release(cam)
            raise SourceError(self._explain(exc)) from None
        self._cam = cam

    def read(self):
        cam = self._cam
        try:
            if hasattr(cam, "capture_arrays"):
                # One request, both streams: the detection plane and the crops show the same instant.
                (main, lores), _ = cam.capture_arrays(["main", "lores"])
            else:
                main, lores = cam.capture_array("main"), cam.capture_array("lores")
        except Exception as exc:  # noqa: BLE001 - a camera fault is a SourceError: reconnect
            raise SourceError(f"Pi camera capture failed: {type(exc).__name__}: {exc}") from None
        lw, lh = self.lores_size
        if not isinstance(lores, np.ndarray) or lores.ndim != 2 or lores.shape[0] < lh * 3 // 2 \
                or lores.shape[1] < lw:
            shape = getattr(lores, "shape", None)
            raise SourceError(f"Pi camera low-resolution stream gave {shape}, expected YUV420 "
                              f"of {lw}x{lh} ({lh * 3 // 2} rows of at least {lw})")
        # YUV420 arrives as (h * 3/2) rows of `stride` bytes: the first h rows are Y.
        return main, lores[:lh, :lw]

    def _release(self, cam) -> None:
        for method in ("stop", "close"):
            if cam is self._injected and method == "close":
                continue  # the caller owns an injected camera
            fn = getattr(cam, method, None)
            if fn is not None:
                try:
                    fn()
                except Exception as exc:  # noqa: BLE001 - closing a failed camera may fail too
                    log.debug("Pi camera %s failed: %s", method, exc)

    def close(self) -> None:
        if self._cam is not None:
            self._release(self._cam)
            self._cam = None


def parse_camera(spec: str) -> str | int:
    """`pi` or a USB camera index from `pi`, `usb:N` or `N`."""
    s = spec.strip().lower()
    if s == "pi":
        return "pi"
    m = re.fullmatch(r"(?:usb:)?(\d+)", s)
    if not m:
        raise UsageError(f"--camera {spec!r}: expected pi, usb:N or a camera index N")
    return int(m.group(1))


def open_source(options: CaptureOptions, camera=None) -> Source:
    """The source `options` name (not opened yet); `camera` is passed to the Pi camera source."""
    o = options
    if bool(o.camera) == bool(o.source):
        raise UsageError("give one of --camera (pi, usb:N) or --source (video, folder, URL)")
    if o.camera:
        which = parse_camera(o.camera)
        fps = o.fps or FALLBACK_FPS
        if which == "pi":
            return PiCameraSource(o.width, o.height, fps, o.lores_width, camera=camera)
        return USBCameraSource(which, o.width, o.height, fps)
    src = o.source
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", src):
        return StreamSource(src, o.open_timeout_s)
    if Path(src).is_dir():
        return ImageFolderSource(src, o.max_pixels)
    return VideoFileSource(src)


class CaptureStage(Stage):
    """Reads the source on its own thread and hands frames to detection."""

    name = "capture"

    def __init__(self, source: Source, options: CaptureOptions, outbox: LatestQueue[Frame],
                 stats: PipelineStats, stop: threading.Event,
                 on_error: Callable[[str, BaseException], None], lossless: bool,
                 on_end: Callable[[str], None]):
        super().__init__(stop, on_error, lossless)
        self.source = source
        self.options = options
        self.outbox = outbox
        self.stats = stats
        self._on_end = on_end

    def run_loop(self) -> None:
        o, src = self.options, self.source
        started = time.monotonic()
        try:
            self._open_within(o.reconnect_timeout_s if src.live else None)
        except SourceError as exc:
            if not src.live or exc.permanent:
                raise
            if not self._retry(exc, at_start=True, since=started):
                return self._on_end("stopped")
        log.info("capturing from %s%s", src.description, f" at {src.fps:g} fps" if src.fps else "")
        pace = o.realtime and not src.live
        period = 1.0 / (o.fps or src.fps or FALLBACK_FPS) if pace else 0.0
        anchor = None
        index = 0
        pass_start, passes = 0, 1  # `index` at the start of this pass over a looped file
        while not self.stop_event.is_set():
            if o.max_frames is not None and index >= o.max_frames:
                return self._on_end("max frames")
            if o.duration is not None and self.stats.clock() - self.stats.started_at >= o.duration:
                return self._on_end("duration")
            try:
                got = src.read()
                if got is None and src.live:
                    raise SourceError(f"{src.description} ended")
            except SourceError as exc:
                if not src.live:
                    raise
                if self.stop_event.is_set() or not self._retry(exc):
                    break  # stopped while the source was down: a stop, not a capture failure
                continue
            if got is None:
                if index == pass_start:
                    raise SourceError(f"{src.description} gave no frames")
                if not o.loop:
                    return self._on_end("end of source")
                # Reopened rather than rewound: a folder is listed again and a file's checks
                # (frames it holds against frames decoded) apply to every pass.
                src.close()
                src.open()
                pass_start, passes = index, passes + 1
                log.info("%s: from the start again (pass %d)", src.description, passes)
                continue
            image = as_bgr(got[0], src.description)
            if pace:
                # A camera delivers frame i at anchor + i * period whether or not anyone is ready.
                now = time.monotonic()
                anchor = now if anchor is None else anchor
                due = anchor + index * period
                if due > now:
                    if self.stop_event.wait(due - now):
                        break
                elif now - due > period:
                    anchor = now - index * period  # decoding fell behind: do not burst to catch up
            at = time.monotonic()
            self.stats.captured(at)
            self.emit(self.outbox, Frame(index, at, image, got[1]))
            index += 1
        self._on_end("stopped")

    def _open_within(self, seconds: float | None) -> None:
        """Open the source, letting the open block for at most `seconds` (None: its own bound)."""
        if seconds is not None:
            self.source.limit_open(max(seconds, 0.0))
        try:
            self.source.open()
        finally:
            if seconds is not None:
                self.source.limit_open(None)

    def _retry(self, exc: SourceError, at_start: bool = False, since: float | None = None) -> bool:
        """Open a live source that is down (at the start) or was lost (during the run), with
        exponential backoff; True once it is open, False when stopped meanwhile. Raises
        SourceError once `reconnect_timeout_s` have passed since `since` (default: now), or at
        once for a fault waiting cannot fix. The deadline bounds the whole wait: the last
        backoff is cut short and an open that blocks is given only the time left."""
        o, src = self.options, self.source
        limit = o.reconnect_timeout_s
        for_how_long = f"for up to {limit:g} s" if limit else "until it is back"
        log.warning("%s; %s %s", exc, "retrying" if at_start else "reconnecting", for_how_long)
        lost_at = time.monotonic() if since is None else since
        deadline = lost_at + limit if limit else None
        delay = o.reconnect_initial_s
        while True:
            src.close()
            left = math.inf if deadline is None else deadline - time.monotonic()
            if left <= 0:
                what = "did not come up" if at_start else "did not come back"
                raise SourceError(f"{src.description} {what} within {limit:g} s "
                                  f"(--source-timeout): {exc}") from None
            if self.stop_event.wait(min(delay, left)):
                return False
            try:
                self._open_within(None if deadline is None else deadline - time.monotonic())
            except SourceError as err:
                if err.permanent:
                    raise
                exc = err
                delay = min(delay * 2, o.reconnect_max_s)
                left = math.inf if deadline is None else deadline - time.monotonic()
                if left > 0:
                    log.warning("%s failed: %s; next try in %.1f s",
                                "open" if at_start else "reconnect", err, min(delay, left))
                continue
            if not at_start:
                self.stats.reconnects += 1
            log.warning("%s is %s after %.1f s", src.description, "up" if at_start else "back",
                        time.monotonic() - lost_at)
            return True

    def close(self) -> None:
        self.source.close()
