#!/usr/bin/env bash
# imaptest (Dovecot's IMAP compliance and stress tester) against the reference and against
# Debian's Dovecot 2.3, side by side: a measure, not a gate.
#
#   conformance/peers/imaptest.sh build DIR   build imaptest into DIR (DIR/imaptest, DIR/tests)
#   conformance/peers/imaptest.sh run DIR [ARGS]
#                                            build if needed, then run conformance/peers/
#                                            imaptest.py --imaptest DIR ARGS (tox -e imaptest,
#                                            tox -e imaptest-peers); see its --help
#
# The source: $IMAPTEST_TARBALL when set (a tarball of the dovecot/imaptest repository at
# commit 924f619, with one top folder), otherwise a clone of https://github.com/dovecot/
# imaptest at that commit: the last one that builds against Dovecot 2.3, which is what Debian
# bookworm ships (dovecot-dev). Two changes are applied to the working tree while building:
#  - upstream commit 9ea2bdd: a test skipped for a missing capability is counted as skipped
#    (without it the run stops counting there);
#  - Debian's deb12u7 Dovecot backports a 2.4 fix that gave imap_parser_create() a fourth
#    argument; when the installed header has it, the three call sites pass NULL.
# A build is reused while DIR/source says it came from the same tarball (or commit).
#
# Installs what is missing with apt-get (root only): dovecot-dev and the build tools for
# imaptest, dovecot-imapd for the Dovecot target. Exit status 3 means they are absent and
# cannot be installed here; `run` then says so and exits 0 (skipped), unless
# MAILSPEC_PEERS_REQUIRED=1.
set -euo pipefail

COMMIT=924f619
UPSTREAM=https://github.com/dovecot/imaptest.git
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=conformance/peers/lib.sh
. "$HERE/lib.sh"
PY=${PYTHON:-python3}

usage() {
    echo "usage: $0 build DIR | run DIR [imaptest.py arguments]" >&2
    exit 2
}

[ $# -ge 2 ] || usage
action=$1
dir=$(realpath -m "$2")
shift 2

source_key() {
    # Where the source comes from: the build's cache key.
    if [ -n "${IMAPTEST_TARBALL:-}" ]; then
        echo "tarball $(realpath "$IMAPTEST_TARBALL") $(sha256sum <"$IMAPTEST_TARBALL" | cut -c1-16)"
    else
        echo "git $UPSTREAM $COMMIT"
    fi
}

fetch_source() {
    # The source tree into $1.
    if [ -n "${IMAPTEST_TARBALL:-}" ]; then
        tar -xzf "$IMAPTEST_TARBALL" -C "$1" --strip-components=1
    else
        install_packages imaptest.sh git ca-certificates
        git clone -q "$UPSTREAM" "$1" >&2
        git -C "$1" checkout -q "$COMMIT"
    fi
}

patch_source() {
    # Upstream 9ea2bdd ("Correctly increment skipped groups if capability test fails").
    patch -s -p1 <<'EOF'
--- a/src/test-exec.c
+++ b/src/test-exec.c
@@ -1171,6 +1171,7 @@ static int test_send_lstate_commands(struct client *_client)
 				return 0;
 			} else if (!test_have_all_capabilities(client)) {
 				test_skip(ctx);
+				test_execute_finish(ctx);
 				return 0;
 			}
 			mask = t_strconcat(client->storage->name, "*", NULL);
EOF
    # No .git in a tarball: the version scripts read this file instead.
    echo "0.0.0-$COMMIT" >version
    if grep -q 'const struct imap_parser_params \*params' /usr/include/dovecot/imap-parser.h; then
        sed -i 's/imap_parser_create(\(.*\), (size_t)-1)/imap_parser_create(\1, (size_t)-1, NULL)/' \
            src/*.c
    fi
}

build() {
    install_packages imaptest.sh dovecot-dev dovecot-core build-essential autoconf automake libtool pkg-config
    local key
    key=$(source_key)
    if [ -x "$dir/imaptest" ] && [ "$(cat "$dir/source" 2>/dev/null)" = "$key" ]; then
        echo "imaptest.sh: imaptest $COMMIT already built in $dir" >&2
        return 0
    fi
    echo "imaptest.sh: building imaptest $COMMIT ($key)" >&2
    local src
    src=$(mktemp -d "${TMPDIR:-/tmp}/imaptest-src.XXXXXX")
    # shellcheck disable=SC2064 # expanded now: $src is local and gone at exit
    trap "rm -rf '$src'" EXIT
    fetch_source "$src"
    (
        cd "$src"
        patch_source
        ./autogen.sh >/dev/null 2>&1
        ./configure -q --with-dovecot=/usr/lib/dovecot >/dev/null
        make -j"$(nproc)" LDFLAGS="-Wl,-rpath,/usr/lib/dovecot" >/dev/null
    )
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$src/src/imaptest" "$dir/imaptest"
    cp -r "$src/src/tests" "$dir/tests"
    cp "$src/profile.conf" "$dir/profile.conf"
    echo "$key" >"$dir/source"
    echo "imaptest.sh: built $dir/imaptest" >&2
}

wants_dovecot() {
    # Whether the runner's arguments name Dovecot as a target (it is one by default).
    local targets=reference,dovecot
    while [ $# -gt 0 ]; do
        case $1 in
            --targets) targets=${2:-}; [ $# -gt 1 ] && shift ;;
            --targets=*) targets=${1#--targets=} ;;
        esac
        shift
    done
    case ",$targets," in
        *,dovecot,*) return 0 ;;
        *) return 1 ;;
    esac
}

run() {
    local status=0 packages=()
    wants_dovecot "$@" && packages+=(dovecot-imapd)
    ( build && install_packages imaptest.sh "${packages[@]}" ) || status=$?
    if [ "$status" -eq 3 ] && [ "${MAILSPEC_PEERS_REQUIRED:-0}" != 1 ]; then
        echo "imaptest.sh: SKIPPED: imaptest or Dovecot cannot be installed on this machine" >&2
        return 0
    fi
    [ "$status" -eq 0 ] || return "$status"
    "$PY" "$HERE/imaptest.py" --imaptest "$dir" "$@"
}

case "$action" in
    build) [ $# -eq 0 ] || usage; build ;;
    run) run "$@" ;;
    *) usage ;;
esac
