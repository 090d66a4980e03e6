#!/usr/bin/env bash
# Build the qstudio wheel and smoke-test it installed in a fresh virtual environment.
#
#   bash packaging/build_and_smoke.sh            # uses .venv/bin/python of this checkout
#   PYTHON=/path/to/python bash packaging/build_and_smoke.sh
#   KEEP=1 bash packaging/build_and_smoke.sh     # keep the temporary folder for a look afterwards
#
# 1. Build: the checkout's files (tracked and untracked, minus .gitignore'd ones such as
#    build/ and *.egg-info, whose stale files could otherwise end up in the wheel) are copied
#    to a temporary folder and built there into a wheel, copied to dist/.  `python -m build`
#    is used when installed, else `pip wheel`; both without build isolation, so the build
#    uses the setuptools of $PYTHON and needs no network.
# 2. Install: a new venv (without pip) in the temporary folder, and `pip install --no-deps
#    --no-index` of the wheel alone into it.
# 3. Dependencies: instead of installing torch, torchvision and PySide6 again (several GB),
#    a .pth file makes the new venv see the site-packages of $PYTHON's environment, appended
#    AFTER its own site-packages.  This test is about the wheel's own content (modules, data
#    files, entry point), not about pip's resolver; `pip check` still verifies that the
#    versions the wheel requires are the ones found.  Paths added by a .pth file are not
#    scanned for further .pth files, so an editable install of qstudio in $PYTHON's
#    environment stays inactive, and the smoke test asserts qstudio comes from the wheel.
# 4. Smoke test: packaging/smoke_test.py is copied to the temporary folder and run there
#    with the new venv's python, outside the checkout, with PYTHONPATH unset, so nothing is
#    imported from the checkout by accident.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
if [ ! -x "$PYTHON" ]; then
  echo "no Python at $PYTHON; set PYTHON=/path/to/python (the environment with qstudio's dependencies)" >&2
  exit 2
fi
unset PYTHONPATH
export QT_QPA_PLATFORM=offscreen
export PIP_DISABLE_PIP_VERSION_CHECK=1

TMP="$(mktemp -d "${TMPDIR:-/tmp}/qstudio-wheel.XXXXXX")"
cleanup() {
  if [ "${KEEP:-0}" = "1" ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

step "python: $PYTHON ($("$PYTHON" -c 'import sys; print(sys.version.split()[0])'))"

# -- 1. build -------------------------------------------------------------------------
step "copying the source of $REPO"
mkdir -p "$TMP/src"
if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$REPO" && git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
     [ -e "$f" ] && printf '%s\0' "$f"  # skip files deleted in the working tree
   done | tar --null -T - -cf -) | tar -xf - -C "$TMP/src"
else
  tar -C "$REPO" --exclude=.venv --exclude=.git --exclude=build --exclude=dist --exclude='*.egg-info' \
      --exclude=__pycache__ -cf - . | tar -xf - -C "$TMP/src"
fi

step "building the wheel"
mkdir -p "$TMP/wheel"
if "$PYTHON" -c 'import build' 2>/dev/null; then
  (cd "$TMP/src" && "$PYTHON" -m build --wheel --no-isolation --outdir "$TMP/wheel" .)
else
  "$PYTHON" -m pip wheel --no-deps --no-build-isolation --quiet -w "$TMP/wheel" "$TMP/src"
fi
WHEEL="$(ls "$TMP"/wheel/qstudio-*.whl)"
mkdir -p "$REPO/dist"
cp "$WHEEL" "$REPO/dist/"
WHEEL="$REPO/dist/$(basename "$WHEEL")"
echo "wheel: $WHEEL ($(du -h "$WHEEL" | cut -f1))"
"$PYTHON" - "$WHEEL" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
data = [n for n in names if not n.endswith(".py") and ".dist-info/" not in n]
print(f"  {len(names)} files, {sum(n.endswith('.py') for n in names)} .py; data files:")
for n in data:
    print(f"    {n}")
EOF

# -- 2. fresh venv, the wheel alone ---------------------------------------------------------
step "installing the wheel into a fresh venv"
# --without-pip: the venv holds the wheel and nothing else (its own, older setuptools would
# otherwise shadow the one torch requires); $PYTHON's pip installs into it with --python.
"$PYTHON" -m venv --without-pip "$TMP/venv"
VPY="$TMP/venv/bin/python"
"$PYTHON" -m pip --python "$VPY" install --quiet --no-deps --no-index "$WHEEL"

# -- 3. dependencies from $PYTHON's environment, after the venv's own site-packages -------------
OWN_SITE="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"$PYTHON" -c 'import sysconfig; p = sysconfig.get_paths(); print(p["purelib"]); print(p["platlib"]) if p["platlib"] != p["purelib"] else None' \
  > "$OWN_SITE/_qstudio_smoke_dependencies.pth"
echo "dependencies from: $(tr '\n' ' ' < "$OWN_SITE/_qstudio_smoke_dependencies.pth")"
"$PYTHON" -m pip --python "$VPY" check

# -- 4. smoke test, outside the checkout ----------------------------------------------------------
step "smoke test"
mkdir -p "$TMP/run"
cp "$REPO/packaging/smoke_test.py" "$TMP/run/"
(cd "$TMP/run" && "$VPY" smoke_test.py --source "$REPO")
