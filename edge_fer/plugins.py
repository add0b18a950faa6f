"""What other installed packages add to edge-fer, found through entry points (setup.cfg), so the
runtime never names them: the host toolchain (`pip install 'edge-fer[convert]'`) adds the
`train`, `ensemble` and `convert` commands, the loading of Keras models that `evaluate` scores,
and the confusion-matrix picture of `evaluate --plot`.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

from edge_fer.errors import BackendError

#: Commands of `edge-fer` (click commands), by name.
COMMANDS = "edge_fer.commands"
#: `keras`: a function (path, *, labels, normalization, crop_margin) -> a classifier of faces.
MODEL_LOADERS = "edge_fer.model_loaders"
#: `confusion`: a function (panels, title) -> PNG bytes of confusion matrices.
PLOTS = "edge_fer.plots"
#: Where the host toolchain comes from, for the message when a group has nothing installed.
TOOLCHAIN_HINT = "pip install 'edge-fer[convert]'"


def installed(group: str) -> dict[str, EntryPoint]:
    """The entry points of `group`, by name."""
    return {ep.name: ep for ep in entry_points(group=group)}


def install_hint(ep: EntryPoint) -> str:
    """What to install for `ep` to load: its distribution with the extras it names."""
    dist = getattr(ep.dist, "name", None)
    if dist and ep.extras:
        return f"pip install '{dist}[{','.join(ep.extras)}]'"
    return f"reinstall {dist or ep.module}"


def load(group: str, name: str, what: str) -> Any:
    """The object entry point `name` of `group` names. BackendError, in one line naming what to
    install, when no package provides it or its package does not load; `what` says what needed
    it ("evaluating a Keras model")."""
    ep = installed(group).get(name)
    if ep is None:
        raise BackendError(f"{what} needs the host toolchain, which is not installed: "
                           f"{TOOLCHAIN_HINT}")
    try:
        return ep.load()
    except ImportError as exc:
        raise BackendError(f"{what} cannot load ({exc}): {install_hint(ep)}") from None
