#!/usr/bin/env bash
# Installs the servers and clients the tests run for real (redis-server, clamd, the
# ManageSieve client sieve-connect, and Chromium with its WebDriver for the control panel's
# browser tests; with the argument "mariadb", MariaDB for the directory's tests), from
# Debian's packages, when they are missing. Idempotent; called by tox before the test envs.
# No virus database is downloaded: the tests start clamd with the project's own signatures.
set -euo pipefail
clamd_path=${MAILSPEC_CLAMD:-/usr/sbin/clamd}  # not on a non-root PATH in Debian
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
[ -x "$clamd_path" ] || command -v clamd >/dev/null 2>&1 || need+=(clamav-daemon)
# MariaDB only for `tox -e mariadb` (`services.sh mariadb`); mariadbd is in /usr/sbin, not on
# a non-root PATH either.
if [ "${1:-}" = mariadb ] && [ ! -x /usr/sbin/mariadbd ] && ! command -v mariadbd >/dev/null 2>&1; then
    need+=(mariadb-server)
fi
command -v sieve-connect >/dev/null 2>&1 || need+=(sieve-connect)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "mailspec tests need: ${need[*]} (install them with your package manager)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null || true
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts packaged daemons on install; the tests run their own on other ports. Stop
# only what this script installed: a redis-server the machine already ran is not ours.
for pkg in "${need[@]}"; do
    case $pkg in
        redis-server) services=(redis-server) ;;
        clamav-daemon) services=(clamav-daemon clamav-freshclam) ;;
        mariadb-server) services=(mariadb) ;;
        *) services=() ;;  # a client: nothing runs
    esac
    for svc in "${services[@]}"; do
        service "$svc" stop >/dev/null 2>&1 || true
    done
done
