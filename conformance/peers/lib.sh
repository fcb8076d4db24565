# Shared by the peers scripts (sourced, not run): installing Debian packages for a peer.
#
# install_packages TAG PACKAGE...  installs the packages that are missing with apt-get (root
#                                  only); exit status 3 when they are missing and cannot be
#                                  installed here (the scripts then skip, unless
#                                  MAILSPEC_PEERS_REQUIRED=1). TAG prefixes its messages.

install_packages() {
    local tag=$1
    shift
    [ $# -gt 0 ] || return 0
    local need=() p
    for p in "$@"; do
        dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
    done
    [ ${#need[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "$tag: missing ${need[*]}; installing them needs root and apt-get" >&2
        exit 3
    fi
    local had_dovecot=no
    dpkg -s dovecot-core >/dev/null 2>&1 && had_dovecot=yes
    echo "$tag: installing ${need[*]} from the Debian archive" >&2
    # "No configuration": the postfix package must not configure or start a system instance.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -qq >/dev/null || { echo "$tag: apt-get update failed" >&2; exit 3; }
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${need[@]}" >/dev/null; then
        echo "$tag: apt-get install ${need[*]} failed" >&2
        exit 3
    fi
    # Debian starts a system Dovecot on 143/993 when it installs one: the runs use private
    # instances, so stop it, unless it was there before (then it is not ours to stop).
    if [ "$had_dovecot" = no ]; then
        service dovecot stop >/dev/null 2>&1 || true
    fi
}
