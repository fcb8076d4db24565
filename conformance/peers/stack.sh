#!/usr/bin/env bash
# Debian's Postfix and Dovecot, hardened as a provider would run them, on loopback ports: a
# peer stack (MX, submission, IMAP, POP3, LMTP delivery, Sieve and ManageSieve through
# Pigeonhole) to run the conformance suite against.
#
#   conformance/peers/stack.sh start DIR   install Postfix and Dovecot if needed (root +
#                                          apt-get), write private instances under DIR, start
#                                          them, and write DIR/target.toml for `mailspec check`
#   conformance/peers/stack.sh stop DIR    stop them
#   conformance/peers/stack.sh restart DIR kill -9 Postfix (its master and the master's
#                                          children) and start it again: the target file's
#                                          restart command (RFC 5321 6.1)
#   conformance/peers/stack.sh check DIR [ARGS]
#                                          start, run `mailspec check --target DIR/target.toml
#                                          ARGS`, stop (tox -e peers)
#
# The instances are self-contained (their own main.cf, master.cf, dovecot.conf, queue,
# Maildirs, certificate and password file, in a directory under /tmp that DIR/instance names:
# the postfix and mail users must be able to reach it, which a work tree may not allow); the
# system's /etc/postfix and /etc/dovecot are never read or changed. DIR gets target.toml, the
# CA file and, after stop, both logs. Exit status 3 means the packages are absent and cannot
# be installed here; `check` then says so and exits 0 (skipped), unless
# MAILSPEC_PEERS_REQUIRED=1. `start` reads two variables, for the benchmark
# (load/bench.py): MAILSPEC_STACK_USERS, more mailbox local parts (mail arrives in them;
# they have no password), and MAILSPEC_STACK_MAIN_CF, lines appended to main.cf.
#
# Mail flows as on a provider's MX: Postfix accepts for the virtual domain and hands each
# message to Dovecot over LMTP (a unix socket only the postfix user may open); users read it
# over IMAP and POP3; Postfix checks submission passwords through Dovecot's auth socket, so
# there is one password file (SHA512-CRYPT hashes).
#
# Hardening, and why (each setting is one the suite checks, or one whose absence would make
# the suite's loopback client more trusted than a client on the internet):
# - mynetworks is empty. Postfix trusts $mynetworks in several defaults, and the suite
#   connects from 127.0.0.1, which the default mynetworks (127.0.0.0/8) includes:
#   smtpd_relay_restrictions (permit_mynetworks: an open relay to loopback),
#   smtpd_forbid_bare_newline_exclusions (bare LF accepted from loopback: SMTP smuggling) and
#   smtpd_client_event_limit_exceptions (no connection or AUTH rate limits for loopback).
#   Empty, a loopback client is an internet client; the exclusions are emptied as well, so
#   that no later mynetworks brings them back.
# - Dovecot listens on 127.0.0.2, not on 127.0.0.1 where the suite connects from: Dovecot's
#   login processes count a connection whose remote address equals the local one as
#   "secured", and allow plaintext logins on it whatever disable_plaintext_auth says (the
#   Dovecot side of the same loopback trap). login_trusted_networks stays empty.
# - No relaying without SASL (permit_sasl_authenticated, reject_unauth_destination); the
#   submission ports refuse anything unauthenticated and require TLS (encrypt / wrappermode).
# - AUTH only inside TLS (smtpd_tls_auth_only); Dovecot: ssl = required and
#   disable_plaintext_auth, so IMAP and POP3 log in only after STARTTLS/STLS or on 993/995;
#   TLS 1.2 at least on both.
# - smtpd_forbid_bare_newline = reject (CVE-2023-51764, SMTP smuggling), for every client.
# - HELO required (smtpd_helo_required), VRFY disabled (address harvesting).
# - The submission ports reject a MAIL FROM the authenticated user does not own
#   (reject_sender_login_mismatch against the user's own address).
# - The standard mailboxes (Drafts, Sent, Junk, Trash, Archive) exist with their SPECIAL-USE
#   attributes from the first login (auto = subscribe).
# One setting is relaxed for speed, and said so: smtpd_error_sleep_time = 0 (a test run makes
# errors on purpose; the 1 s tarpit per error would only slow it). smtpd_soft_error_limit and
# smtpd_hard_error_limit keep their defaults. Dovecot's auth penalty is kept (after failed
# logins from an address, each further login from it waits 2, 4, 8, up to 15 s, until one
# succeeds): the suite's deliberate wrong passwords meet it, so the target's timeout is 20 s.
#
# The features the stack offers go into the target file (`features`): platform requirements
# of features it does not offer (spam and virus refusal: no Rspamd or ClamAV here) are
# reported "not claimed". Known deviations are listed, each with its class, reason and
# reference, in conformance/peers/deviations.toml, which the target file names: the report
# shows them as deviations, and any other failure fails the check.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=conformance/peers/lib.sh
. "$HERE/lib.sh"

usage() {
    echo "usage: $0 start|stop|restart DIR | check DIR [mailspec check arguments]" >&2
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
DOVECOT_IP=127.0.0.2
# The benchmark (load/bench.py) adds mailboxes and main.cf lines through the environment.
EXTRA_USERS=${MAILSPEC_STACK_USERS:-}
EXTRA_MAIN_CF=${MAILSPEC_STACK_MAIN_CF:-}
PACKAGES=(postfix dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd dovecot-sieve
    dovecot-managesieved)

stop() {
    [ -f "$dir/instance" ] || return 0
    inst=$(cat "$dir/instance")
    etc=$inst/etc
    if [ -f "$etc/main.cf" ] && command -v postfix >/dev/null 2>&1; then
        postfix -c "$etc" stop >/dev/null 2>&1 || true
        wait_gone "$inst/spool/pid/master.pid"
    fi
    if [ -f "$inst/dovecot/dovecot.conf" ] && command -v dovecot >/dev/null 2>&1; then
        dovecot -c "$inst/dovecot/dovecot.conf" stop >/dev/null 2>&1 || true
        wait_gone "$inst/dovecot/run/master.pid"
    fi
    cp "$inst/maillog" "$dir/maillog" 2>/dev/null || true
    cp "$inst/dovecot/dovecot.log" "$dir/dovecot.log" 2>/dev/null || true
    case "$inst" in
        */mailspec-stack.*) rm -rf "$inst" ;;
    esac
    rm -f "$dir/instance"
}

restart() {
    # A crash of the MTA, as abrupt as it gets: the master stopped (so it starts no new
    # child), its children (smtpd, cleanup, qmgr...) and then itself killed with SIGKILL, by
    # their ids. What Postfix answered 250 to must be in its queue files; Dovecot runs on.
    inst=$(cat "$dir/instance")
    etc=$inst/etc
    local pid
    pid=$(tr -d ' ' <"$inst/spool/pid/master.pid")
    kill -STOP "$pid"
    pkill -KILL -P "$pid" || true
    kill -KILL "$pid"
    wait_gone "$inst/spool/pid/master.pid" || true
    postfix -c "$etc" start </dev/null >>"$inst/start.log" 2>&1 \
        || { cat "$inst/start.log" >&2; exit 1; }
}

wait_gone() {
    # `postfix stop` and `dovecot stop` return before the master has gone.
    local pid
    for _ in $(seq 50); do
        [ -f "$1" ] || return 0
        pid=$(tr -d ' ' <"$1" 2>/dev/null || true)
        if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
}

free_ports() {
    # Ports the kernel hands out now; neither server can bind port 0 and report it back.
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

wait_listening() {
    local port up=no ip=127.0.0.1
    [ "${DOVECOT:-}" = yes ] && ip=$DOVECOT_IP
    for port in "$@"; do
        up=no
        for _ in $(seq 100); do
            if "$PY" -c "import socket; socket.create_connection(('$ip', $port), 1).close()" \
                2>/dev/null; then
                up=yes
                break
            fi
            sleep 0.1
        done
        if [ "$up" != yes ]; then
            echo "stack.sh: nothing listens on $ip:$port; the logs:" >&2
            tail -n 20 "$inst/start.log" "$inst/maillog" "$inst/dovecot/dovecot.log" >&2 || true
            exit 1
        fi
    done
}

write_dovecot() {
    # $1 imap, $2 imaps, $3 pop3, $4 pop3s, $5 managesieve; the passwords in $pw_a, $pw_b.
    local d=$inst/dovecot mail_user=nobody login=dovenull internal=dovecot
    mkdir -p "$d/run" "$d/state" "$d/home"
    local uid gid
    uid=$(id -u "$mail_user")
    gid=$(id -g "$mail_user")
    chown "$uid:$gid" "$d/home"
    {
        printf 'alice@%s:%s::::::\n' "$DOMAIN" "$(doveadm pw -s SHA512-CRYPT -p "$pw_a")"
        printf 'bob@%s:%s::::::\n' "$DOMAIN" "$(doveadm pw -s SHA512-CRYPT -p "$pw_b")"
        # Mailboxes only mail arrives in (no password that logs in): the benchmark's.
        local user
        for user in $EXTRA_USERS; do
            printf '%s@%s:{CRYPT}!::::::\n' "$user" "$DOMAIN"
        done
    } >"$d/passwd"
    chmod 640 "$d/passwd"
    chgrp "$internal" "$d/passwd"
    cat >"$d/dovecot.conf" <<EOF
# Written by conformance/peers/stack.sh (Dovecot $(dovecot --version | cut -d' ' -f1)): a private
# instance; nothing is read from /etc/dovecot.
base_dir = $d/run
state_dir = $d/state
instance_name = mailspec-stack-$(basename "$inst")
# Not 127.0.0.1, where the suite connects from: Dovecot counts a connection whose remote
# address is its own local address as "secured" and allows plaintext logins on it, whatever
# disable_plaintext_auth says. On 127.0.0.2 the suite is a remote client, as on the internet.
listen = $DOVECOT_IP
protocols = imap pop3 lmtp sieve
log_path = $d/dovecot.log
hostname = $HOSTNAME_
postmaster_address = postmaster@$DOMAIN

# TLS before any login, on every port; no plaintext authentication outside TLS.
ssl = required
ssl_min_protocol = TLSv1.2
ssl_cert = <$inst/tls/cert.pem
ssl_key = <$inst/tls/key.pem
disable_plaintext_auth = yes
auth_mechanisms = plain login

default_login_user = $login
default_internal_user = $internal
first_valid_uid = $uid
last_valid_uid = $uid
mail_location = maildir:~/Maildir
passdb {
  driver = passwd-file
  args = username_format=%u $d/passwd
}
userdb {
  driver = static
  args = uid=$uid gid=$gid home=$d/home/%u
}

# The standard mailboxes, with their SPECIAL-USE attributes, from the first login.
namespace inbox {
  inbox = yes
  separator = /
  mailbox Drafts {
    special_use = \\Drafts
    auto = subscribe
  }
  mailbox Sent {
    special_use = \\Sent
    auto = subscribe
  }
  mailbox Junk {
    special_use = \\Junk
    auto = subscribe
  }
  mailbox Trash {
    special_use = \\Trash
    auto = subscribe
  }
  mailbox Archive {
    special_use = \\Archive
    auto = subscribe
  }
}

service imap-login {
  inet_listener imap {
    port = $1
  }
  inet_listener imaps {
    port = $2
    ssl = yes
  }
  # The login processes' chroot needs a root-owned path; this instance lives under /tmp.
  chroot =
}
service pop3-login {
  inet_listener pop3 {
    port = $3
  }
  inet_listener pop3s {
    port = $4
    ssl = yes
  }
  chroot =
}
# Pigeonhole: users' Sieve scripts, run at LMTP delivery, managed over ManageSieve (RFC
# 5804; STARTTLS before AUTHENTICATE, as ssl = required says for every port).
service managesieve-login {
  inet_listener sieve {
    port = $5
  }
  chroot =
}
protocol lmtp {
  mail_plugins = \$mail_plugins sieve
}
# fileinto a folder the user has not made creates it (RFC 5228 4.1 lets a server refuse;
# providers, and the reference, create it), subscribed so that clients show it.
lda_mailbox_autocreate = yes
lda_mailbox_autosubscribe = yes
plugin {
  sieve = file:~/sieve;active=~/.dovecot.sieve
}
service anvil {
  chroot =
}
# Delivery from Postfix: a unix socket only the postfix user may open (no TCP listener).
service lmtp {
  unix_listener lmtp {
    user = postfix
    group = postfix
    mode = 0600
  }
}
# Postfix asks Dovecot whether a submission login is right.
service auth {
  unix_listener auth-postfix {
    user = postfix
    group = postfix
    mode = 0600
  }
}
EOF
}

start() {
    install_packages stack.sh "${PACKAGES[@]}"
    stop
    rm -rf "$dir"
    mkdir -p "$dir"
    inst=$(mktemp -d "${MAILSPEC_POSTFIX_TMP:-/tmp}/mailspec-stack.XXXXXX")
    chmod 755 "$inst"
    echo "$inst" >"$dir/instance"
    etc=$inst/etc
    mkdir -p "$etc" "$inst/spool" "$inst/data" "$inst/tls"
    local version
    version=$(postconf -d -h mail_version)
    # 3.9, 3.8.5, 3.7.10, 3.6.14, 3.5.24 take normalize|reject; earlier fixes took yes|no.
    if ! postconf -d -h smtpd_forbid_bare_newline >/dev/null 2>&1; then
        echo "stack.sh: Postfix $version has no smtpd_forbid_bare_newline (CVE-2023-51764);" \
            "the stack would be open to SMTP smuggling" >&2
        exit 3
    fi

    local port_mx port_sub port_subs port_imap port_imaps port_pop3 port_pop3s port_sieve
    read -r port_mx port_sub port_subs port_imap port_imaps port_pop3 port_pop3s port_sieve \
        <<<"$(free_ports 8)"
    pw_a=$(password)
    pw_b=$(password)

    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=$HOSTNAME_" \
        -addext "subjectAltName=DNS:$HOSTNAME_,IP:127.0.0.1,IP:$DOVECOT_IP" \
        -keyout "$inst/tls/key.pem" -out "$inst/tls/cert.pem" >/dev/null 2>&1
    chmod 600 "$inst/tls/key.pem"
    chown postfix "$inst/data"

    write_dovecot "$port_imap" "$port_imaps" "$port_pop3" "$port_pop3s" "$port_sieve"
    local dsock=$inst/dovecot/run

    cat >"$etc/main.cf" <<EOF
# Written by conformance/peers/stack.sh (Postfix $version): a private instance.
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

# The test domain: two mailboxes in Dovecot, reached over LMTP; postmaster an alias.
virtual_mailbox_domains = $DOMAIN
virtual_mailbox_maps = texthash:$etc/vmailbox
virtual_alias_maps = texthash:$etc/valias
virtual_transport = lmtp:unix:$dsock/lmtp

# Nothing is trusted for being on loopback (see the header of stack.sh): no relaying for
# anyone but authenticated users, and no exclusions granted to \$mynetworks.
mynetworks =
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions = permit_sasl_authenticated, reject_unauth_destination
smtpd_client_event_limit_exceptions =
smtpd_helo_required = yes
disable_vrfy_command = yes

# SMTP smuggling (CVE-2023-51764): bare LF is refused, from every client.
smtpd_forbid_bare_newline = reject
smtpd_forbid_bare_newline_exclusions =

# TLS everywhere it can be; AUTH only inside TLS, checked by Dovecot.
smtpd_tls_cert_file = $inst/tls/cert.pem
smtpd_tls_key_file = $inst/tls/key.pem
smtpd_tls_security_level = may
smtpd_tls_mandatory_protocols = >=TLSv1.2
smtpd_tls_protocols = >=TLSv1.2
smtpd_tls_auth_only = yes
smtpd_tls_session_cache_database =
smtpd_tls_loglevel = 0
smtpd_sasl_type = dovecot
smtpd_sasl_path = $dsock/auth-postfix
smtpd_sasl_auth_enable = yes
broken_sasl_auth_clients = no
# Each user owns the address they log in with (and its aliases).
smtpd_sender_login_maps = texthash:$etc/senders

# A test run makes many errors on purpose: no tarpit sleeps, which would only slow it.
smtpd_error_sleep_time = 0
$EXTRA_MAIN_CF
EOF

    local submission_opts="
  -o smtpd_client_restrictions=
  -o smtpd_sender_restrictions=reject_sender_login_mismatch
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject"
    cat >"$etc/master.cf" <<EOF
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:$port_mx inet n - n - - smtpd
127.0.0.1:$port_sub inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt$submission_opts
127.0.0.1:$port_subs inet n - n - - smtpd
  -o syslog_name=postfix/submissions
  -o smtpd_tls_wrappermode=yes$submission_opts
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

    {
        printf 'alice@%s x\nbob@%s x\n' "$DOMAIN" "$DOMAIN"
        for user in $EXTRA_USERS; do printf '%s@%s x\n' "$user" "$DOMAIN"; done
    } >"$etc/vmailbox"
    printf 'postmaster@%s alice@%s\n' "$DOMAIN" "$DOMAIN" >"$etc/valias"
    printf 'postmaster alice@%s\n' "$DOMAIN" >"$etc/aliases"
    printf 'alice@%s alice@%s\nbob@%s bob@%s\npostmaster@%s alice@%s\n' \
        "$DOMAIN" "$DOMAIN" "$DOMAIN" "$DOMAIN" "$DOMAIN" "$DOMAIN" >"$etc/senders"

    # The daemons must not keep the caller's stdout and stderr open (a pipe to them would
    # never close): their own messages go to the logs, and to start.log.
    dovecot -c "$inst/dovecot/dovecot.conf" </dev/null >>"$inst/start.log" 2>&1 \
        || { cat "$inst/start.log" >&2; exit 1; }
    DOVECOT=yes wait_listening "$port_imap" "$port_imaps" "$port_pop3" "$port_pop3s" \
        "$port_sieve"
    postfix -c "$etc" check >&2
    postfix -c "$etc" start </dev/null >>"$inst/start.log" 2>&1 \
        || { cat "$inst/start.log" >&2; exit 1; }
    wait_listening "$port_mx" "$port_sub" "$port_subs"
    cp "$inst/tls/cert.pem" "$dir/cert.pem"

    cat >"$dir/target.toml" <<EOF
# Written by conformance/peers/stack.sh: Postfix $version and Dovecot on loopback.
name = "postfix-$version+dovecot-$(dovecot --version | cut -d' ' -f1)"
domain = "$DOMAIN"
hostname = "$HOSTNAME_"
timeout = 20.0
capabilities = []
# kill -9 of Postfix and a start (RFC 5321 6.1: no accepted message lost).
restart = "bash $HERE/stack.sh restart $dir"
# What this stack offers (see stack.sh): HELO required, the standard mailboxes with their
# SPECIAL-USE attributes. No spam or virus filter, greylisting, DNSBL, SPF/DKIM/DMARC,
# rate limits or login lockout: those platform requirements are "not claimed".
features = ["helo-required", "special-use", "sieve"]

[endpoints]
smtp = "smtp://127.0.0.1:$port_mx"
submission = "smtp://127.0.0.1:$port_sub"
submissions = "smtps://127.0.0.1:$port_subs"
imap = "imap://$DOVECOT_IP:$port_imap"
imaps = "imaps://$DOVECOT_IP:$port_imaps"
pop3 = "pop3://$DOVECOT_IP:$port_pop3"
pop3s = "pop3s://$DOVECOT_IP:$port_pop3s"
managesieve = "sieve://$DOVECOT_IP:$port_sieve"

[accounts.primary]
address = "alice@$DOMAIN"
password = "$pw_a"

[accounts.secondary]
address = "bob@$DOMAIN"
password = "$pw_b"

[tls]
cafile = "$dir/cert.pem"
server_name = "$HOSTNAME_"

[expect]
deviations = "$HERE/deviations.toml"
EOF
    echo "stack.sh: Postfix $version on 127.0.0.1:$port_mx (MX), $port_sub (submission)," \
        "$port_subs (submissions); Dovecot on $DOVECOT_IP:$port_imap/$port_imaps (IMAP)," \
        "$port_pop3/$port_pop3s (POP3); target: $dir/target.toml" >&2
}

check() {
    local status=0
    trap stop EXIT
    ( start ) || status=$?
    if [ "$status" -eq 3 ] && [ "${MAILSPEC_PEERS_REQUIRED:-0}" != 1 ]; then
        echo "stack.sh: SKIPPED: Postfix and Dovecot are not available on this machine" >&2
        return 0
    fi
    [ "$status" -eq 0 ] || return "$status"
    mailspec check --target "$dir/target.toml" "$@"
}

case "$action" in
    start) [ $# -eq 0 ] || usage; start ;;
    stop) [ $# -eq 0 ] || usage; stop ;;
    restart) [ $# -eq 0 ] || usage; restart ;;
    check) check "$@" ;;
    *) usage ;;
esac
