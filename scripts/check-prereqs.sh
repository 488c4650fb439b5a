#!/usr/bin/env bash
# Checks what `make demo` and `make test` need on this machine: Go, the
# PostgreSQL 15+ server binaries (initdb, postgres) and redis-server; with
# --nginx (make test) also nginx, caddy (real auth proxies in two tests) and
# prometheus with promtool (the alert rules and dashboard test).
#
# When something is missing:
#   - run as root on a machine with apt-get: installs it (apt-get update first),
#   - otherwise: prints the exact command to run and exits 1.
# --check-only never installs. Nothing here starts or touches a system
# Postgres or Redis: the tests and the demo run their own throwaway servers.
set -euo pipefail

want_nginx=0
install=auto
for arg in "$@"; do
  case "$arg" in
    --nginx) want_nginx=1 ;;
    --check-only) install=no ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "check-prereqs: unknown argument $arg" >&2; exit 2 ;;
  esac
done

say() { printf '  %-14s %s\n' "$1" "$2"; }
missing_pkgs=()
problems=()

# --- Go ---------------------------------------------------------------------
need_go=$(sed -n 's/^go \([0-9]*\.[0-9]*\).*/\1/p' "$(dirname "$0")/../go.mod")
if command -v go >/dev/null 2>&1; then
  have_go=$(go env GOVERSION 2>/dev/null | sed 's/^go//')
  if printf '%s\n%s\n' "$need_go" "$have_go" | sort -V -C; then
    say go "ok ($have_go)"
  else
    say go "too old ($have_go, need $need_go or newer)"
    problems+=("Go $need_go or newer: https://go.dev/dl/ (Debian's golang package is too old)")
  fi
else
  say go "MISSING"
  problems+=("Go $need_go or newer: https://go.dev/dl/ (then put /usr/local/go/bin on PATH)")
fi

# --- PostgreSQL server binaries (same search order as internal/testenv) ------
pg_bindir() {
  if [ -n "${PG_BINDIR:-}" ]; then echo "$PG_BINDIR"; return; fi
  local d
  if d=$(pg_config --bindir 2>/dev/null) && [ -x "$d/initdb" ]; then echo "$d"; return; fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ]; then echo "$d"; return; fi
  done
}
bindir=$(pg_bindir || true)
if [ -n "$bindir" ] && [ -x "$bindir/postgres" ]; then
  pg_major=$("$bindir/postgres" --version | sed -n 's/.*PostgreSQL) \([0-9]*\).*/\1/p')
  if [ "${pg_major:-0}" -ge 15 ]; then
    say postgres "ok ($pg_major, $bindir)"
  else
    say postgres "too old ($pg_major in $bindir, need 15+)"
    problems+=("PostgreSQL 15+ server: your distribution's is older; add https://apt.postgresql.org and install postgresql-15, or set PG_BINDIR to a 15+ bin folder")
  fi
else
  say postgres "MISSING (initdb/postgres not found via PG_BINDIR, pg_config --bindir or /usr/lib/postgresql/*/bin)"
  missing_pkgs+=(postgresql)
fi
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1 && [ -n "$bindir" ]; then
  # Postgres refuses to run as root; the test environment runs it as "postgres".
  say postgres-user "MISSING (running as root, Postgres must run as the postgres user)"
  missing_pkgs+=(postgresql)
fi

# --- redis-server -------------------------------------------------------------
redis_bin=""
if [ -n "${REDIS_BINDIR:-}" ] && [ -x "$REDIS_BINDIR/redis-server" ]; then
  redis_bin="$REDIS_BINDIR/redis-server"
elif command -v redis-server >/dev/null 2>&1; then
  redis_bin=$(command -v redis-server)
fi
if [ -n "$redis_bin" ]; then
  say redis-server "ok ($("$redis_bin" --version | sed -n 's/.* v=\([0-9.]*\).*/\1/p'))"
else
  say redis-server "MISSING"
  missing_pkgs+=(redis-server)
fi

# --- nginx (one test) ----------------------------------------------------------
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
  say nginx "ok"
elif [ "$want_nginx" = 1 ]; then
  say nginx "MISSING (needed by the nginx auth_request test)"
  missing_pkgs+=(nginx-light)
else
  say nginx "not found (not needed by the demo; make test needs it: apt-get install -y nginx-light)"
fi

# --- caddy (one test) ----------------------------------------------------------
if command -v caddy >/dev/null 2>&1; then
  say caddy "ok ($(caddy version 2>/dev/null | sed -n '1s/^v\{0,1\}\([0-9][0-9.]*\).*/\1/p'))"
elif [ "$want_nginx" = 1 ]; then
  say caddy "MISSING (needed by the Caddy forward_auth test)"
  missing_pkgs+=(caddy)
else
  say caddy "not found (not needed by the demo; make test needs it: apt-get install -y caddy)"
fi

# --- prometheus and promtool (the deploy/ test) --------------------------------
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  say prometheus "ok ($(prometheus --version 2>&1 | sed -n '1s/^prometheus, version \([0-9][0-9.]*\).*/\1/p'))"
elif [ "$want_nginx" = 1 ]; then
  say prometheus "MISSING (needed by the alert rules and dashboard test)"
  missing_pkgs+=(prometheus)
else
  say prometheus "not found (not needed by the demo; make test needs it: apt-get install -y prometheus)"
fi

# --- verdict ------------------------------------------------------------------
if [ ${#problems[@]} -gt 0 ]; then
  echo "Install first:" >&2
  for p in "${problems[@]}"; do echo "  - $p" >&2; done
  exit 1
fi
if [ ${#missing_pkgs[@]} -eq 0 ]; then
  exit 0
fi
# shellcheck disable=SC2207
pkgs=($(printf '%s\n' "${missing_pkgs[@]}" | sort -u))
if [ "$install" = auto ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing ${pkgs[*]} with apt-get (running as root)..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # nginx-light is gone from newer Debian releases; plain nginx does the same.
  if [[ " ${pkgs[*]} " == *" nginx-light "* ]] && ! apt-cache show nginx-light >/dev/null 2>&1; then
    pkgs=("${pkgs[@]/nginx-light/nginx}")
  fi
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
  # Debian starts a Prometheus service on :9090 where systemd runs; the
  # test runs its own on a free port, so stop the one we installed.
  if [[ " ${pkgs[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
  exec "$0" --check-only "$@"
fi
echo >&2
echo "Missing prerequisites. On Debian/Ubuntu install them with:" >&2
echo >&2
echo "  sudo apt-get install -y ${pkgs[*]}" >&2
echo >&2
echo "(other systems: install the PostgreSQL 15+ server and Redis, then set PG_BINDIR / REDIS_BINDIR if they are not on the usual paths)" >&2
exit 1
