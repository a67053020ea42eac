#!/usr/bin/env bash
# Run `ansible-test sanity` (or `ansible-test units` with ANSIBLE_TEST_COMMAND=units) on a clean
# copy of the collection.
#
# The copy holds exactly the files git knows about (tracked, plus untracked files
# that are not ignored), so virtualenvs, build output and lab state never reach
# the sanity tests.  Extra arguments go to ansible-test, e.g. `--test pylint`.
# Environment: VENV (default .venv), PYTHON_VERSION (default 3.11).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON_VERSION="${PYTHON_VERSION:-3.11}"
COMMAND="${ANSIBLE_TEST_COMMAND:-sanity}"
case "$COMMAND" in
    sanity) extra=() ;;
    units) extra=(--requirements) ;;
    *) echo "ANSIBLE_TEST_COMMAND must be sanity or units, not $COMMAND" >&2; exit 2 ;;
esac
DEST="$ROOT/.build/$COMMAND/ansible_collections/theprotocol/operator"

if [[ ! -x "$VENV/bin/ansible-test" ]]; then
    echo "ansible-test not found in $VENV: create the virtualenv from requirements.txt first." >&2
    exit 2
fi

# ansible-test bootstraps pip into each of its virtualenvs with a get-pip script that
# it downloads from a host this machine cannot reach. Offer it a local stand-in at the
# cache path it documents: pip run from the wheel that Python's ensurepip ships, which
# then installs the pinned pip from the package index as the real script would.
pip_version="$("$VENV/bin/python" - <<'PY'
import os
import re

import ansible_test

path = os.path.join(os.path.dirname(ansible_test.__file__), '_internal', 'python_requirements.py')
with open(path, encoding='utf-8') as handle:
    match = re.search(r"pip='([0-9.]+)'", handle.read())
print(match.group(1) if match else '')
PY
)"
if [[ -n "$pip_version" ]]; then
    get_pip="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
    if [[ ! -e "$get_pip" ]] || grep -q 'theprotocol-offline-get-pip' "$get_pip"; then
        mkdir -p "$(dirname "$get_pip")"
        cat > "$get_pip" <<'PY'
"""Offline stand-in for get-pip.py (theprotocol-offline-get-pip)."""
import glob
import os
import sys

import ensurepip

here = os.path.dirname(ensurepip.__file__)
wheels = sorted(glob.glob(os.path.join(here, 'pip-*.whl')) + glob.glob(os.path.join(here, '_bundled', 'pip-*.whl'))
                + glob.glob('/usr/share/python-wheels/pip-*.whl'))
if not wheels:
    sys.exit('no pip wheel found next to ensurepip (%s): install python3-venv or python3-pip-whl' % here)
sys.path.insert(0, wheels[-1])
from pip._internal.cli.main import main  # noqa: E402  pylint: disable=wrong-import-position

args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
sys.exit(main(['install', '--upgrade', '--force-reinstall'] + args))
PY
    fi
fi

cd "$ROOT"
rm -rf "$DEST"
mkdir -p "$DEST"
files=()
while IFS= read -r -d '' f; do
    # Skip files deleted in the work tree but still in the index, and the lab and the
    # benchmarks (tooling outside the collection artifact, see build_ignore).
    if [[ "$f" != lab/* && "$f" != benchmarks/* ]] && [[ -e "$f" || -L "$f" ]]; then
        files+=("$f")
    fi
done < <(git ls-files -z --cached --others --exclude-standard)
if ((${#files[@]} == 0)); then
    echo "git lists no files under $ROOT." >&2
    exit 2
fi
printf '%s\0' "${files[@]}" | xargs -0 cp -P --parents -t "$DEST"

cd "$DEST"
# ansible-test lists content with git when it finds a .git upwards. The repository
# ignores .build/, so give the copy a throwaway repository of its own (nothing is
# added or committed: untracked, not ignored files are what ansible-test lists).
git init -q .
export PATH="$VENV/bin:$PATH"
set +e
ansible-test "$COMMAND" --venv --python "$PYTHON_VERSION" --color no "${extra[@]}" "$@"
rc=$?
set -e
exit "$rc"
