#!/usr/bin/env bash
# Runs the whole test suite: formatting check, clippy, then all tests, which
# start throwaway PostgreSQL clusters. Installs the PostgreSQL server with
# apt-get when it is missing and we are root. Extra arguments are passed to
# the test runner (cargo nextest run, else cargo test), e.g. `tests/run.sh harness`.
# Without arguments it ends with packaging/check (static binary, .deb, .rpm, service files).
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

# The server major version whose binaries the tests use (the same search as tests/cluster.rs).
server_major() {
    local bindir
    if bindir=$(pg_config --bindir 2>/dev/null) && [[ -x $bindir/pg_ctl ]]; then
        "$bindir/pg_ctl" --version | sed -E 's/.* ([0-9]+)[.].*/\1/'
        return
    fi
    ls -d /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sed -E 's#/usr/lib/postgresql/([0-9]+)/.*#\1#' | sort -n | tail -1
}

# Debian packages the suite needs: the server, and PgQ 3 with pgqd for the tests that prove
# skyrep works with (and like) the real thing.
step "Checking for PostgreSQL server binaries, PgQ 3, pgqd and the packaging tools"
missing=()
have_server_binaries || missing+=(postgresql)
major=$(server_major || true)
if [[ -n $major ]]; then
    [[ -f /usr/share/postgresql/$major/extension/pgq.control ]] || missing+=("postgresql-$major-pgq3")
fi
command -v pgqd >/dev/null || missing+=(pgqd)
# packaging/check: musl-gcc for the static build (ring compiles C), file to see it is
# static, rpmbuild for the RPM, logrotate to rotate a running job's log.
command -v musl-gcc >/dev/null || missing+=(musl-tools)
command -v file >/dev/null || missing+=(file)
command -v rpmbuild >/dev/null || missing+=(rpm)
command -v logrotate >/dev/null || missing+=(logrotate)
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        step "Installing ${missing[*]}"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
        major=$(server_major)
        if [[ ! -f /usr/share/postgresql/$major/extension/pgq.control ]]; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "postgresql-$major-pgq3"
        fi
    elif ! have_server_binaries; then
        echo "PostgreSQL server binaries not found. Install them, e.g. on Debian/Ubuntu as root:" >&2
        echo "    apt-get install postgresql postgresql-$major-pgq3 pgqd" >&2
        exit 1
    else
        echo "note: ${missing[*]} not installed; the tests that need them will say so" >&2
    fi
fi
# tests/exact_capture.rs writes money values in a German lc_monetary (1.234,56 €).
if ! locale -a 2>/dev/null | grep -qix 'de_DE.utf8'; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        step "Generating locale de_DE.UTF-8"
        command -v locale-gen >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends locales
        sed -i 's/^# *de_DE.UTF-8 UTF-8/de_DE.UTF-8 UTF-8/' /etc/locale.gen
        grep -qx 'de_DE.UTF-8 UTF-8' /etc/locale.gen || echo 'de_DE.UTF-8 UTF-8' >>/etc/locale.gen
        locale-gen
    else
        echo "note: locale de_DE.UTF-8 is missing; the lc_monetary tests use C" >&2
    fi
fi
# As root, the tests run the server as user postgres (it refuses to run as root).
if [[ $(id -u) -eq 0 ]] && ! id -u postgres >/dev/null 2>&1; then
    step "Creating user postgres"
    useradd --system --user-group --no-create-home --shell /usr/sbin/nologin postgres
fi

# The static build's standard library (packaging/build-static).
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
    step "rustup target add x86_64-unknown-linux-musl"
    rustup target add x86_64-unknown-linux-musl
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

# A run limited to some tests is about those tests only.
if (($# == 0)); then
    step "packaging/check"
    packaging/check
fi
