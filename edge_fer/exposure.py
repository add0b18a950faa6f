"""What edge-fer's outputs may show of the people in view, declared once: the privacy modes of
what is drawn, served and recorded, and what `/api/faces` tells. No dependencies, so the command
line's options (`edge_fer.options`), the drawing (`edge_fer.draw`) and the server's options read
the same tuples without importing OpenCV or the server."""

from __future__ import annotations

#: What `privacy` can hide in what is shown and kept: "faces" (the detected and tracked faces,
#: as --blur-faces) or "frame" (the whole picture, so a face the detector misses is never shown).
PRIVACY_MODES = ("faces", "frame")

#: What `/api/faces` can tell (`ServerOptions.faces_api`, `run --faces-api`): "full" (each
#: face's track id, box, label and scores) or "aggregate" (how many faces show each label).
FACES_API_MODES = ("full", "aggregate")


def privacy_mode(blur_faces: bool = False, privacy: str | None = None) -> str | None:
    """The privacy mode of a sink's options: `privacy` when given, else "faces" with
    `blur_faces`, else None (nothing hidden). ValueError for an unknown mode."""
    if privacy is not None and privacy not in PRIVACY_MODES:
        raise ValueError(f"privacy {privacy!r}: allowed {' or '.join(PRIVACY_MODES)}")
    return privacy or ("faces" if blur_faces else None)
