"""The small boards (Zero 2 W, Pi 3): the A53 CPU view of the arm64 lane and of the budget, the
small-board profile (systemd/config.zero.toml) run over a clip, and the installer choosing it
from the board's device-tree model or cpuinfo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from clips import make_clip
from conftest import REPO, invoke
from edge_fer.cli import run as run_command
from edge_fer.config import load_config
from edge_fer_models import SHIPPED
from kiosk_helpers import free_port, read_records

ZERO = REPO / "systemd" / "config.zero.toml"
EXAMPLE = REPO / "systemd" / "config.example.toml"
INSTALL = REPO / "systemd" / "install.sh"
ARM64 = REPO / "ci" / "arm64.sh"

sys.path[:0] = [str(REPO / "benchmarks"), str(REPO / "ci")]
try:
    import arm64_compare
    import pi_budget
finally:
    del sys.path[:2]


@pytest.fixture(scope="module")
def views(tmp_path_factory) -> Path:
    """The lane's fake Raspberry Pi CPU views, made by ci/arm64.sh itself."""
    d = tmp_path_factory.mktemp("views")
    subprocess.run(["bash", str(ARM64), "views", str(d)], check=True, capture_output=True, text=True)
    return d


def cpuinfo_fields(text: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out.setdefault(k.strip(), set()).add(v.strip())
    return out


# --- the A53 view --------------------------------------------------------------------------------

@pytest.mark.parametrize("view, model, mhz", [("zero2w", "Raspberry Pi Zero 2 W Rev 1.0", 1000),
                                              ("pi3", "Raspberry Pi 3 Model B Plus Rev 1.3", 1400)])
def test_the_a53_views_show_four_cortex_a53_with_their_caches_and_clock(views, view, model, mhz):
    text = (views / view / "cpuinfo").read_text()
    f = cpuinfo_fields(text)
    assert text.count("processor\t:") == 4
    assert f["CPU part"] == {"0xd03"} and f["CPU implementer"] == {"0x41"} and f["CPU revision"] == {"4"}
    assert f["Model"] == {model}
    cpu = views / view / "cpu"
    assert (cpu / "online").read_text().strip() == "0-3"
    for c in range(4):
        cache = cpu / f"cpu{c}" / "cache"
        sizes = {(cache / i / "type").read_text().strip(): (cache / i / "size").read_text().strip()
                 for i in ("index0", "index1", "index2")}
        assert sizes == {"Data": "32K", "Instruction": "32K", "Unified": "512K"}
        assert (cache / "index2" / "shared_cpu_list").read_text().strip() == "0-3"
        assert int((cpu / f"cpu{c}" / "cpufreq" / "cpuinfo_max_freq").read_text()) == mhz * 1000


def test_the_budget_knows_the_a53_and_each_core_has_a_view_the_lane_makes(views):
    assert pi_budget.CORES["a53"]["cpu"] == "cortex-a53"
    assert pi_budget.CORES["a53"]["view"] == "zero2w"
    for core, c in pi_budget.CORES.items():
        assert (views / c["view"] / "cpuinfo").is_file(), core
        assert c["ipc"] > 0 and c["ghz"] > 0
    # The lane gives each view its matching -cpu.
    text = ARM64.read_text()
    assert "zero2w|pi3) echo cortex-a53" in text


def test_the_budget_measures_every_stage(detector_weights, images_dir):
    """What `pi_budget.py --cores a53 --json` reports is what its guest side measures: run here,
    natively (the same code the guest runs, without the counting plugin), it has to cover every
    stage: capture, every detector, every shipped model (batch 1, 4, TTA, threads), the pipeline."""
    from edge_fer.detector import detector_names

    env = {**os.environ, "EDGE_FER_DATA": str(images_dir.parent), "EDGE_FER_DETECTOR_DIR": str(detector_weights)}
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "pi_budget.py"), "--guest", "--reps", "1"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    regions = json.loads(p.stdout.strip().splitlines()[-1])
    stages = {r["stage"] for r in regions}
    assert stages == {"capture", "detect", "classify", "pipeline"}
    whats = [r["what"] for r in regions]
    for name in detector_names():
        assert any(w.startswith(f"{name},") and "run default" in w for w in whats), name
    for path in SHIPPED.values():
        for suffix in (", batch 1", ", batch 4", ", batch 1, tta", ", batch 3, 1 thread", ", batch 3, 2 threads"):
            assert f"{Path(path).name}{suffix}" in whats
    assert sum(r["stage"] == "pipeline" for r in regions) == 2
    # The host side turns those regions, on the A53, into one row per stage and an estimate per
    # detector, model and face count (counts made up here, 1000 per call or frame: only the shape
    # of the output matters).
    def made_up(r: dict) -> int:
        return 1000 * (int(r["what"].split()[0]) if r["stage"] == "pipeline" else r["reps"] * r["per"])

    fake_counts = [(r, made_up(r), 0, made_up(r)) for r in regions]
    rows = pi_budget.tabulate({"a53": fake_counts})
    assert all("a53" in row.instructions for row in rows)
    assert {row.stage for row in rows} == stages
    est = pi_budget.estimate(rows, {"a53": pi_budget.CORES["a53"]})
    assert {(e["detector"], e["model"], e["faces"]) for e in est} == {
        (d, Path(m).name, n) for d in detector_names() for m in SHIPPED.values() for n in (1, 3)}
    # The lane's check of that JSON (ci/arm64_compare.py budget) passes it, and names a gap.
    budget = {"assumptions": {"a53": pi_budget.CORES["a53"]}, "stages": [asdict(r) for r in rows],
              "run_estimates": est}
    models = [Path(m).name for m in SHIPPED.values()]
    assert arm64_compare.check_budget(budget, "a53", detector_names(), models) == []
    budget["stages"] = [r for r in budget["stages"] if r["what"] != "lite.tflite, batch 3, 1 thread"]
    budget["stages"][0]["instructions"]["a53"] = 0
    assert arm64_compare.check_budget(budget, "a53", detector_names(), models) == [
        f"capture '{rows[0].what}': no instruction count on a53", "lite.tflite, batch 3, 1 thread not counted"]


# --- the small-board profile ---------------------------------------------------------------------

def test_the_profile_is_a_valid_config_with_the_small_board_choices():
    result = invoke("check-config", str(ZERO))
    assert result.exit_code == 0, result.output
    c = load_config(ZERO, run_command)
    assert c.get("model", "model") == str(SHIPPED["lite"])
    assert c.get("detection", "detector") == "blazeface"
    assert c.get("model", "threads") == 1 and c.get("tracking", "detect_every") == 3
    assert (c.get("source", "width"), c.get("source", "height"), c.get("source", "fps")) == (480, 360, 10)
    # The kiosk's plumbing is the example's: same camera, log and loopback page.
    example = load_config(EXAMPLE, run_command)
    for section, key in (("source", "camera"), ("logging", "log_json"), ("server", "serve"),
                         ("output", "display")):
        assert c.get(section, key) == example.get(section, key), key


def test_the_profile_runs_over_a_clip(tmp_path, images_dir, detector_weights):
    clip = make_clip(tmp_path / "faces.mp4", images_dir, frames=40, fps=10)
    log = tmp_path / "run.jsonl"
    # The clip replaces the profile's camera; the page goes to a free port and the log to tmp.
    p = subprocess.run([sys.executable, "-m", "edge_fer", "run", "--config", str(ZERO), "--source", str(clip.path),
                        "--log-json", str(log), "--serve", f"127.0.0.1:{free_port()}", "--headless"],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "EDGE_FER_DETECTOR_DIR": str(detector_weights)})
    assert p.returncode == 0, p.stderr[-2000:]
    records = read_records(log)
    start, summary = records[0], records[-1]
    assert start["type"] == "start" and summary["type"] == "summary"
    # The run took the profile's settings.
    assert Path(start["model"]).name == "lite.tflite" and start["detector"]["name"] == "blazeface"
    assert (start["capture"]["width"], start["capture"]["height"], start["capture"]["fps"]) == (480, 360, 10)
    assert start["tracking"]["detect_every"] == 3 and start["tracking"]["smoothing"] == 6
    assert summary["stop_reason"] == "end of source" and summary["frames_processed"] == 40
    tracks = {e["track"] for e in records if e["type"] == "event" and e["event"] == "appear"}
    assert len(tracks) >= 3, "the clip's three faces were not all found"


# --- the installer picks the profile from the board ------------------------------------------------

ZERO_DT = "Raspberry Pi Zero 2 W Rev 1.0"
PI4_DT = "Raspberry Pi 4 Model B Rev 1.1"


def install(tmp_path: Path, dt_model: Path, cpuinfo: Path, *args: str) -> tuple[str, str]:
    root = tmp_path / "root"
    kiosk = ["--kiosk-user", "kiosk"] if "--kiosk" in args else ["--no-kiosk"]
    args = tuple(a for a in args if a != "--kiosk")
    p = subprocess.run(["bash", str(INSTALL), "--no-pip", *kiosk, *args], capture_output=True, text=True,
                       env={**os.environ, "DESTDIR": str(root), "EDGE_FER_DT_MODEL": str(dt_model),
                            "EDGE_FER_CPUINFO": str(cpuinfo)}, timeout=60)
    assert p.returncode == 0, p.stderr
    return (root / "etc/edge-fer/config.toml").read_text(), p.stdout


def dt_file(tmp_path: Path, model: str) -> Path:
    p = tmp_path / "model"
    p.write_bytes(model.encode() + b"\0")  # the device tree's strings end in NUL
    return p


@pytest.mark.parametrize("model, expected", [(ZERO_DT, ZERO), (PI4_DT, EXAMPLE),
                                             ("Raspberry Pi 3 Model B Rev 1.2", ZERO)])
def test_the_installer_picks_the_profile_from_the_device_tree_model(tmp_path, model, expected):
    config, out = install(tmp_path, dt_file(tmp_path, model), tmp_path / "absent")
    assert config == expected.read_text()
    assert f"board: {model}: config systemd/{expected.name}" in out


@pytest.mark.parametrize("view, expected", [("zero2w", ZERO), ("pi4", EXAMPLE)])
def test_the_installer_picks_the_profile_from_cpuinfo(tmp_path, views, view, expected):
    # No device tree (an older kernel or a container): the Model line of the lane's cpuinfo.
    config, out = install(tmp_path, tmp_path / "absent", views / view / "cpuinfo")
    assert config == expected.read_text()
    model = next(iter(cpuinfo_fields((views / view / "cpuinfo").read_text())["Model"]))
    assert f"board: {model}: config systemd/{expected.name}" in out


def test_the_installer_profile_option_and_an_unknown_board(tmp_path):
    config, out = install(tmp_path, dt_file(tmp_path, PI4_DT), tmp_path / "absent", "--profile", "small")
    assert config == ZERO.read_text() and "--profile small" in out
    config, out = install(tmp_path / "b", tmp_path / "absent", tmp_path / "absent")
    assert config == EXAMPLE.read_text() and "board: unknown" in out
    p = subprocess.run(["bash", str(INSTALL), "--profile", "tiny"], capture_output=True, text=True,
                       env={**os.environ, "DESTDIR": str(tmp_path / "c")})
    assert p.returncode == 1 and "unknown --profile tiny" in p.stderr


def test_the_installer_warns_that_a_512_mb_board_has_no_room_for_the_kiosk_browser(tmp_path):
    _, out = install(tmp_path, dt_file(tmp_path, ZERO_DT), tmp_path / "absent", "--kiosk")
    assert "512 MB" in out and "--no-kiosk" in out
    _, out = install(tmp_path / "b", dt_file(tmp_path, ZERO_DT), tmp_path / "absent")
    assert "512 MB" not in out  # installed without the browser: nothing to warn about
    _, out = install(tmp_path / "c", dt_file(tmp_path, "Raspberry Pi 3 Model B Plus Rev 1.3"), tmp_path / "absent", "--kiosk")
    assert "512 MB" not in out  # a Pi 3 B+ has 1 GB
