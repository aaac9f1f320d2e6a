#!/usr/bin/env bash
# Runs the whole test suite: formatting check, clippy, then all tests, which
# start throwaway PostgreSQL clusters. Installs the PostgreSQL server with
# apt-get when it is missing and we are root. Extra arguments are passed to
# the test runner (cargo nextest run, else cargo test), e.g. `tests/run.sh harness`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() {
    printf '\n==> %s\n' "$*"
}

# The same search as tests/cluster.rs.
have_server_binaries() {
    local bindir
    if bindir=$(pg_config --bindir 2>/dev/null) && [[ -x $bindir/pg_ctl ]]; then
        return 0
    fi
    compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || command -v pg_ctl >/dev/null
}

step "Checking for PostgreSQL server binaries"
if ! have_server_binaries; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        step "Installing PostgreSQL server binaries"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql
    else
        echo "PostgreSQL server binaries not found. Install them, e.g. on Debian/Ubuntu as root:" >&2
        echo "    apt-get install postgresql" >&2
        exit 1
    fi
fi
# As root, the tests run the server as user postgres (it refuses to run as root).
if [[ $(id -u) -eq 0 ]] && ! id -u postgres >/dev/null 2>&1; then
    step "Creating user postgres"
    useradd --system --user-group --no-create-home --shell /usr/sbin/nologin postgres
fi

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

if cargo nextest --version >/dev/null 2>&1; then
    step "cargo nextest run $*"
    cargo nextest run "$@"
else
    step "cargo test $*"
    cargo test "$@"
fi
