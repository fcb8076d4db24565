#!/usr/bin/env bash
# Debian's Postfix, hardened, on loopback ports: a peer to run the conformance suite against.
#
#   conformance/peers/postfix.sh start DIR   install Postfix if needed (root + apt-get), write a
#                                            private instance under DIR, start it, and write
#                                            DIR/target.toml for `mailspec check --target`
#   conformance/peers/postfix.sh stop DIR    stop that instance
#   conformance/peers/postfix.sh check DIR [ARGS]
#                                            start, run `mailspec check --target
#                                            DIR/target.toml ARGS`, stop (tox -e peers)
#
# The instance is self-contained (its own main.cf, master.cf, queue, certificate and SASL
# database, in a directory under /tmp that DIR/instance names: the postfix user must be
# able to reach it, which a work tree may not allow); the system's /etc/postfix is never
# changed. DIR gets target.toml, the CA file and, after stop, the mail log. Exit status 3 means
# Postfix is absent and cannot be installed here; `check` then says so and exits 0
# (skipped), unless MAILSPEC_PEERS_REQUIRED=1.
#
# Known deviations (conformance/peers/postfix-deviations.toml) go into the target file:
# the report shows them as "deviation", and any other failure fails the check.
#
# Hardening that the suite checks (https://www.postfix.org/smtp-smuggling.html and the
# relay probes): smtpd_forbid_bare_newline (reject where this version knows it, with no
# exclusions: the default exempts $mynetworks, which includes the suite's loopback), no
# relaying without SASL, AUTH only after TLS, VRFY disabled, HELO required.
set -euo pipefail

usage() {
    echo "usage: $0 start|stop DIR | check DIR [mailspec check arguments]" >&2
    exit 2
}

[ $# -ge 2 ] || usage
action=$1
dir=$(realpath -m "$2")
shift 2
PY=${PYTHON:-python3}
inst=""
etc=""

DOMAIN=example.test
HOSTNAME_=mail.example.test

stop() {
    [ -f "$dir/instance" ] || return 0
    inst=$(cat "$dir/instance")
    etc=$inst/etc
    if [ -f "$etc/main.cf" ] && command -v postfix >/dev/null 2>&1; then
        postfix -c "$etc" stop >/dev/null 2>&1 || true
        # postfix stop returns before master has gone: wait for its pid file to go.
        for _ in $(seq 50); do
            [ -f "$inst/spool/pid/master.pid" ] || break
            pid=$(tr -d ' ' <"$inst/spool/pid/master.pid" 2>/dev/null || true)
            if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then break; fi
            sleep 0.1
        done
    fi
    cp "$inst/maillog" "$dir/maillog" 2>/dev/null || true
    case "$inst" in
        */mailspec-postfix.*) rm -rf "$inst" ;;
    esac
    rm -f "$dir/instance"
}

install_postfix() {
    if command -v postconf >/dev/null 2>&1 && command -v saslpasswd2 >/dev/null 2>&1 \
        && compgen -G "/usr/lib/*/sasl2/libplain.so*" >/dev/null; then
        return 0
    fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "postfix.sh: Postfix is not installed, and installing it needs root and apt-get" >&2
        exit 3
    fi
    echo "postfix.sh: installing postfix from the Debian archive" >&2
    # "No configuration": the package must not configure or start a system instance.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -qq || { echo "postfix.sh: apt-get update failed" >&2; exit 3; }
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        postfix sasl2-bin libsasl2-modules >&2; then
        echo "postfix.sh: apt-get install postfix failed" >&2
        exit 3
    fi
}

free_ports() {
    # Ports the kernel hands out now; Postfix cannot bind port 0 and report it back.
    "$PY" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

password() {
    "$PY" -c 'import secrets; print(secrets.token_urlsafe(18))'
}

start() {
    install_postfix
    stop
    rm -rf "$dir"
    mkdir -p "$dir"
    inst=$(mktemp -d "${MAILSPEC_POSTFIX_TMP:-/tmp}/mailspec-postfix.XXXXXX")
    chmod 755 "$inst"
    echo "$inst" >"$dir/instance"
    etc=$inst/etc
    mkdir -p "$etc/sasl" "$inst/spool" "$inst/data" "$inst/tls"
    local version bare_newline
    version=$(postconf -d -h mail_version)
    # 3.9, 3.8.5, 3.7.10, 3.6.14, 3.5.24 take normalize|reject; earlier fixes took yes|no.
    bare_newline=$(postconf -d -h smtpd_forbid_bare_newline 2>/dev/null || echo unknown)
    local forbid=reject
    case "$version" in
        3.[0-4].* | 3.[0-4]) forbid=unsupported ;;
    esac
    if [ "$bare_newline" = unknown ]; then
        forbid=unsupported
    fi

    read -r port_mx port_sub port_subs <<<"$(free_ports 3)"
    local pw_a pw_b
    pw_a=$(password)
    pw_b=$(password)

    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=$HOSTNAME_" \
        -addext "subjectAltName=DNS:$HOSTNAME_,IP:127.0.0.1" \
        -keyout "$inst/tls/key.pem" -out "$inst/tls/cert.pem" >/dev/null 2>&1
    chmod 600 "$inst/tls/key.pem"
    chown postfix "$inst/data"

    cat >"$etc/main.cf" <<EOF
# Written by conformance/peers/postfix.sh (Postfix $version): a private test instance.
compatibility_level = 3.6
queue_directory = $inst/spool
data_directory = $inst/data
mail_owner = postfix
setgid_group = postdrop
maillog_file_prefixes = $inst
maillog_file = $inst/maillog
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = $HOSTNAME_
mydomain = $DOMAIN
myorigin = \$myhostname
# Only the host name is delivered by local(8): that makes the bare "Postmaster" recipient
# (RFC 5321 4.5.1), which Postfix qualifies with \$myorigin, a local address.
mydestination = \$myhostname
alias_maps = texthash:$etc/aliases
alias_database =
local_recipient_maps = \$alias_maps
smtpd_banner = \$myhostname ESMTP
biff = no
append_dot_mydomain = no
readme_directory = no

# The test domain: two mailboxes, postmaster an alias; mail is discarded once accepted.
virtual_mailbox_domains = $DOMAIN
virtual_mailbox_maps = texthash:$etc/vmailbox
virtual_alias_maps = texthash:$etc/valias
virtual_transport = discard:

# No relaying for anyone but authenticated users; the suite connects from loopback, so
# \$mynetworks must not grant it anything.
mynetworks = 127.0.0.1/32
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions = permit_sasl_authenticated, reject_unauth_destination
smtpd_helo_required = yes
disable_vrfy_command = yes

# SMTP smuggling (CVE-2023-51764): bare LF is refused, from every client.
EOF
    if [ "$forbid" != unsupported ]; then
        cat >>"$etc/main.cf" <<EOF
smtpd_forbid_bare_newline = $forbid
smtpd_forbid_bare_newline_exclusions =
EOF
    else
        echo "# (this Postfix $version has no smtpd_forbid_bare_newline)" >>"$etc/main.cf"
    fi
    cat >>"$etc/main.cf" <<EOF

# TLS everywhere it can be; AUTH only inside TLS.
smtpd_tls_cert_file = $inst/tls/cert.pem
smtpd_tls_key_file = $inst/tls/key.pem
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
smtpd_tls_session_cache_database =
smtpd_tls_loglevel = 0
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = $etc/sasl
smtpd_sasl_auth_enable = yes
broken_sasl_auth_clients = no

# A test run makes many errors on purpose: no tarpit sleeps, which would only slow it.
smtpd_error_sleep_time = 0
EOF

    cat >"$etc/master.cf" <<EOF
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:$port_mx inet n - n - - smtpd
127.0.0.1:$port_sub inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_client_restrictions=
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
127.0.0.1:$port_subs inet n - n - - smtpd
  -o syslog_name=postfix/submissions
  -o smtpd_tls_wrappermode=yes
  -o smtpd_client_restrictions=
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF

    printf 'alice@%s x\nbob@%s x\n' "$DOMAIN" "$DOMAIN" >"$etc/vmailbox"
    printf 'postmaster@%s alice@%s\n' "$DOMAIN" "$DOMAIN" >"$etc/valias"
    printf 'postmaster alice@%s\n' "$DOMAIN" >"$etc/aliases"

    cat >"$etc/sasl/smtpd.conf" <<EOF
pwcheck_method: auxprop
auxprop_plugin: sasldb
mech_list: PLAIN LOGIN
sasldb_path: $etc/sasl/sasldb2
EOF
    printf '%s' "$pw_a" | saslpasswd2 -f "$etc/sasl/sasldb2" -c -p -u "$DOMAIN" alice
    printf '%s' "$pw_b" | saslpasswd2 -f "$etc/sasl/sasldb2" -c -p -u "$DOMAIN" bob
    chown postfix "$etc/sasl/sasldb2"
    chmod 640 "$etc/sasl/sasldb2"

    postfix -c "$etc" check >&2
    postfix -c "$etc" start >&2

    local port up
    for port in "$port_mx" "$port_sub" "$port_subs"; do
        up=no
        for _ in $(seq 100); do
            if "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $port), 1).close()" \
                2>/dev/null; then
                up=yes
                break
            fi
            sleep 0.1
        done
        if [ "$up" != yes ]; then
            echo "postfix.sh: Postfix is not listening on 127.0.0.1:$port; its log:" >&2
            tail -n 20 "$inst/maillog" >&2 || true
            exit 1
        fi
    done
    cp "$inst/tls/cert.pem" "$dir/cert.pem"

    local deviations
    deviations=$(cat "$(dirname "$0")/postfix-deviations.toml")
    cat >"$dir/target.toml" <<EOF
# Written by conformance/peers/postfix.sh: Postfix $version on loopback.
name = "postfix-$version"
domain = "$DOMAIN"
hostname = "$HOSTNAME_"
timeout = 10.0
capabilities = []

[endpoints]
smtp = "smtp://127.0.0.1:$port_mx"
submission = "smtp://127.0.0.1:$port_sub"
submissions = "smtps://127.0.0.1:$port_subs"

[accounts.primary]
address = "alice@$DOMAIN"
password = "$pw_a"

[accounts.secondary]
address = "bob@$DOMAIN"
password = "$pw_b"

[tls]
cafile = "$dir/cert.pem"
server_name = "$HOSTNAME_"

$deviations
EOF
    echo "postfix.sh: Postfix $version listening on 127.0.0.1:$port_mx (MX)," \
        "$port_sub (submission), $port_subs (submissions); target: $dir/target.toml" >&2
}

check() {
    local status=0
    trap stop EXIT
    ( start ) || status=$?
    if [ "$status" -eq 3 ] && [ "${MAILSPEC_PEERS_REQUIRED:-0}" != 1 ]; then
        echo "postfix.sh: SKIPPED: Postfix is not available on this machine" >&2
        return 0
    fi
    [ "$status" -eq 0 ] || return "$status"
    mailspec check --target "$dir/target.toml" "$@"
}

case "$action" in
    start) [ $# -eq 0 ] || usage; start ;;
    stop) [ $# -eq 0 ] || usage; stop ;;
    check) check "$@" ;;
    *) usage ;;
esac
