#!/usr/bin/env bash
# Run every test: the Rust workspace's own tests, then the Azure SDK for Python tests (tests/sdk)
# against a debug build of byos. Run from anywhere; extra arguments go to pytest (e.g. -k rbac -x).
# Needs: cargo (Rust toolchain), python3 (3.11) with venv, apt (it installs the Debian packages the tests
# use: PocketSphinx with its US English model, Flite, eSpeak NG). Exits non-zero if anything fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}

step() { printf '\n==> %s\n' "$*"; }

# ---- Debian packages the tests use: the speech engine and its model, Flite for test speech, the OCR engine --
DEBS=(libpocketsphinx3 pocketsphinx-en-us flite libflite1 libespeak-ng1 espeak-ng-data lame flac vorbis-tools
      libtesseract5 tesseract-ocr-eng libpoppler-glib8 libcairo2 fonts-dejavu-core qpdf)
missing_debs=()
for deb in "${DEBS[@]}"; do
    dpkg -s "$deb" >/dev/null 2>&1 || missing_debs+=("$deb")
done
if [ "${#missing_debs[@]}" -gt 0 ]; then
    step "installing Debian packages: ${missing_debs[*]}"
    sudo_=""
    [ "$(id -u)" -eq 0 ] || sudo_=sudo
    $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${missing_debs[@]}" </dev/null
fi

# ---- Python environments (each reinstalled only when its requirements change) -----------------------
# ensure_venv DIR REQUIREMENTS: DIR is a venv with exactly REQUIREMENTS installed.
ensure_venv() {
    local venv=$1 requirements=$2 stamp=$1/.requirements.sha256 want
    if ! "$venv/bin/python" -c '' 2>/dev/null; then
        step "creating $venv"
        rm -rf "$venv"
        "$PYTHON" -m venv "$venv"
    fi
    want=$( { sha256sum "$requirements"; "$venv/bin/python" -VV; } | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
        step "installing $requirements into $venv"
        "$venv/bin/python" -m pip install --disable-pip-version-check --quiet --upgrade pip
        "$venv/bin/python" -m pip install --disable-pip-version-check --quiet -r "$requirements"
        echo "$want" > "$stamp"
    fi
}

# The SDK tests' packages; the Azure CLI apart, as its pins differ (about a minute and 750 MB, once).
VENV=.venv
ensure_venv "$VENV" tests/sdk/requirements.txt
ensure_venv .venv-az tests/sdk/requirements-az.txt
export BYOS_AZ=$PWD/.venv-az/bin/az

# ---- Rust ---------------------------------------------------------------------------------------------
step "cargo build --bin byos"
cargo build --bin byos

if cargo nextest --version >/dev/null 2>&1; then
    step "cargo nextest run --workspace"
    cargo nextest run --workspace
else
    step "cargo test --workspace"
    cargo test --workspace
fi

# ---- Azure SDK for Python against byos -------------------------------------------------------------
target_dir=${CARGO_TARGET_DIR:-target}
case $target_dir in /*) ;; *) target_dir=$PWD/$target_dir ;; esac
export BYOS_BIN=$target_dir/debug/byos

step "pytest tests/sdk (BYOS_BIN=$BYOS_BIN)"
rc=0
"$VENV/bin/python" -m pytest tests/sdk -q -p no:cacheprovider "$@" || rc=$?
if [ "$rc" -eq 5 ]; then
    echo "error: pytest collected no tests in tests/sdk" >&2
    exit 1
fi
exit "$rc"
