# Shared set-up for scripts/test and scripts/run: a project venv that is
# (re)installed only when pyproject.toml changes, so repeated runs start fast.
# Sourced, not executed. EXTRAS picks the optional dependencies: scripts/test
# (and the benchmarks, through it) want "test"; scripts/run sets EXTRAS= (none),
# since running a cluster needs no test or plotting tools.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
EXTRAS="${EXTRAS-test}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV" >&2
    "$PY" -m venv "$VENV"
fi
HASH="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
STAMP="$VENV/.installed-$HASH-${EXTRAS:-none}"
# A venv with the test extra has everything running a cluster needs.
if [ ! -f "$STAMP" ] && { [ -n "$EXTRAS" ] || [ ! -f "$VENV/.installed-$HASH-test" ]; }; then
    SPEC="$ROOT"
    [ -z "$EXTRAS" ] || SPEC="$ROOT[$EXTRAS]"
    echo "installing gossip-registry${EXTRAS:+[$EXTRAS]} into $VENV" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$SPEC" >&2
    # Keep the stamp of the other extras of this pyproject.toml: a run after a
    # test (or the reverse) must not reinstall what is there.
    find "$VENV" -maxdepth 1 -name '.installed-*' ! -name ".installed-$HASH-*" -delete
    touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
