#!/bin/bash
# Sets up a real mail system on loopback for the end-to-end test
# (tests/it/e2e.rs): Debian's Postfix and Dovecot (IMAP, POP3, LMTP, SASL),
# and an rsyslogd that writes their log to a file mailtrail follows.
#
#   sudo bash tests/e2e/setup.sh        # then: MAILTRAIL_E2E=1 cargo test --test it e2e
#   sudo bash tests/e2e/teardown.sh     # stops what this started
#
# For a throwaway Debian 12 machine or container WITHOUT systemd, as root.
# Idempotent: it stops what an earlier run started (by pid), rewrites every
# config, empties the queue, the log and the mailboxes, and starts again.
# Everything listens on 127.0.0.1 only; no mail leaves the machine
# (default_transport is an error; the "remote" domains are test servers the
# Rust test runs on 127.0.0.2-4).
#
# What it changes on the machine: installs postfix, dovecot-imapd,
# dovecot-pop3d, rsyslog; adds the system users vmail (owns the mailboxes)
# and mailtrail-e2e (runs the request pipe); overwrites /etc/postfix/main.cf,
# master.cf and adds e2e-* maps there; writes its Dovecot config under $WORK
# (the packaged /etc/dovecot/dovecot.conf is not used).

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/common.sh
. "$HERE/common.sh"
START=$(date +%s)
say() { printf '[%3ds] %s\n' "$(( $(date +%s) - START ))" "$*"; }

[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
    echo "systemd is running: use a throwaway Debian 12 container instead" >&2
    exit 1
fi

# --------------------------------------------------------------- packages
# "No configuration" keeps the postfix package from writing a main.cf and
# from asking questions; ours is written below.
need=()
for p in postfix dovecot-imapd dovecot-pop3d dovecot-lmtpd rsyslog; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    if ! apt-cache policy "${need[@]}" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        apt-get update -q
    fi
    # policy-rc.d: on a machine with an init system apt would start the
    # packaged daemons with their own configs; we start ours by hand.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi

say "stopping anything left from an earlier run"
stop_all

# --------------------------------------------------------------- accounts
# vmail owns every mailbox (Dovecot's virtual users: any local part of
# example.edu is a mailbox, so each test run uses mailboxes of its own and
# earlier runs' lines in the log cannot change its numbers).
id -u vmail >/dev/null 2>&1 || useradd -r -M -d /nonexistent -s /usr/sbin/nologin vmail
# mailtrail-e2e runs `mailtrail request` for the Postfix pipe: pipe(8)
# refuses root, and an unprivileged user is what a real site uses.
id -u "$PIPE_USER" >/dev/null 2>&1 || useradd -r -M -d /nonexistent -s /usr/sbin/nologin "$PIPE_USER"
VMAIL_UID=$(id -u vmail)

# ------------------------------------------------------------ directories
# $WORK/test is world-writable (sticky, like /tmp): the test, run as any
# user, puts the mailtrail binary, its config and the SQLite database in
# $WORK/test/current, where the pipe user can run, read and write them too.
# A build tree under someone's home is usually not reachable by another
# user, and a database must be writable by every process that queues a
# request (the test's `serve` and the pipe's `request`).
rm -rf "$LOGDIR" "$MAILROOT" "$RUNDIR"
mkdir -p "$WORK" "$LOGDIR" "$MAILROOT" "$RUNDIR" "$WORK/rsyslog" "$WORK/test"
chmod 0755 "$WORK" "$LOGDIR" "$RUNDIR"
chmod 1777 "$WORK/test"
chown vmail:vmail "$MAILROOT"
chmod 0700 "$MAILROOT"

# ---------------------------------------------------------------- dovecot
say "writing the Dovecot config"
cat >"$DOVECOT_CONF" <<EOF
# Written by tests/e2e/setup.sh: IMAP 143, POP3 110 on 127.0.0.1, LMTP and
# SASL for Postfix on sockets in its queue directory.
base_dir = $RUNDIR
protocols = imap pop3 lmtp
listen = 127.0.0.1
ssl = no
# Plain passwords over loopback only.
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_username_format = %Lu
# auth_verbose names the user of a failed login; passwords stay unlogged.
auth_verbose = yes
auth_verbose_passwords = no
log_path = syslog
syslog_facility = mail

mail_location = maildir:$MAILROOT/%d/%n/Maildir
mail_uid = vmail
mail_gid = vmail
first_valid_uid = $VMAIL_UID
last_valid_uid = $VMAIL_UID

# What mailtrail's access history reads: deletions and expunges with their
# Message-IDs, and the client's IMAP ID.
mail_plugins = \$mail_plugins notify mail_log
plugin {
  mail_log_events = delete undelete expunge copy mailbox_delete mailbox_rename flag_change save
  mail_log_fields = uid box msgid size from subject flags
}
imap_id_log = *

# Every address of example.edu is a mailbox, with one password (loopback
# test machine only). A wrong password is still a failed login.
passdb {
  driver = static
  args = password=$PASSWORD
}
userdb {
  driver = static
  args = uid=vmail gid=vmail home=$MAILROOT/%d/%n allow_all_users=yes
}

service auth {
  unix_listener /var/spool/postfix/private/auth {
    mode = 0660
    user = postfix
    group = postfix
  }
}
service lmtp {
  unix_listener /var/spool/postfix/private/dovecot-lmtp {
    mode = 0600
    user = postfix
    group = postfix
  }
}
protocol lmtp {
  postmaster_address = postmaster@example.edu
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = 143
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = 110
  }
  inet_listener pop3s {
    port = 0
  }
}
EOF
doveconf -c "$DOVECOT_CONF" -n >/dev/null

# ---------------------------------------------------------------- postfix
say "writing the Postfix config"
cat >/etc/postfix/main.cf <<'EOF'
# Written by tests/e2e/setup.sh (mailtrail end-to-end test).
compatibility_level = 3.6
smtpd_banner = $myhostname ESMTP $mail_name (Debian/GNU)
biff = no
append_dot_mydomain = no
readme_directory = no

myhostname = mail.example.edu
mydomain = example.edu
mydestination = localhost
alias_maps = hash:/etc/aliases
alias_database = hash:/etc/aliases

# example.edu: every local part is a mailbox, delivered by LMTP into
# Dovecot (virtual users under one system user).
virtual_mailbox_domains = example.edu
virtual_mailbox_maps = regexp:/etc/postfix/e2e-mailboxes
virtual_transport = lmtp:unix:private/dovecot-lmtp

# Loopback only, and nothing leaves: the test's "remote" domains go to its
# own servers on 127.0.0.2-4, everything else is refused by error(8).
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
transport_maps = texthash:/etc/postfix/e2e-transport
default_transport = error:5.7.1 this test machine sends no mail out
smtp_dns_support_level = disabled
smtp_connect_timeout = 5s

smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination

# SMTP AUTH (through Dovecot) on the submission port only.
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_sasl_auth_enable = no
smtpd_sasl_security_options = noanonymous
smtpd_tls_security_level = none
smtp_tls_security_level = none

# Deferred mail is retried only long after the test is over, so each
# deferral the test causes is logged exactly once while it runs.
queue_run_delay = 300s
minimal_backoff_time = 1800s
maximal_backoff_time = 3600s
EOF

cat >/etc/postfix/e2e-mailboxes <<'EOF'
/^[^@]+@example\.edu$/    OK
EOF
cat >/etc/postfix/e2e-transport <<'EOF'
ok.test                 smtp:[127.0.0.2]:2525
bounce.test             smtp:[127.0.0.3]:2525
defer.test              smtp:[127.0.0.4]:2525
mailtrail@example.edu   mailtrail:
EOF

# chroot "n" everywhere: the daemons are started by hand, not by Debian's
# init script, which would copy /etc files into the chroot. The pipe
# follows deploy/postfix-request.md, with paths the test fills in.
cat >/etc/postfix/master.cf <<EOF
# service type  private unpriv  chroot  wakeup  maxproc command + args
smtp      inet  n       -       n       -       -       smtpd
submission inet n       -       n       -       -       smtpd
  -o syslog_name=postfix/submission
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
mailtrail unix  -       n       n       -       4       pipe
  flags=Rq user=$PIPE_USER argv=$CURRENT/mailtrail --config $CURRENT/config.toml request --sender \${sender}
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
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
  -o syslog_name=postfix/\$service_name
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

[ -f /etc/aliases ] || echo "postmaster: root" >/etc/aliases
newaliases
postfix check
# Mail left in the queue by an earlier run (postfix is stopped here).
if [ -d /var/spool/postfix/hold ]; then postsuper -d ALL >/dev/null 2>&1 || true; fi

# ---------------------------------------------------------------- rsyslog
# One file, mail.* of both programs, RFC 3339 stamps with the UTC offset
# (the test's config says timezone = "UTC"). Host name pinned to "mail".
cat >"$WORK/rsyslog.conf" <<EOF
global(localHostname="mail" workDirectory="$WORK/rsyslog")
module(load="imuxsock" SysSock.Name="/dev/log" SysSock.RateLimit.Interval="0")
mail.* action(type="omfile" file="$LOG" template="RSYSLOG_FileFormat" fileCreateMode="0644")
EOF
rsyslogd -N1 -f "$WORK/rsyslog.conf" >/dev/null 2>&1 || { rsyslogd -N1 -f "$WORK/rsyslog.conf"; exit 1; }

trap 'say "failed; stopping what was started"; stop_all; exit 1' ERR INT TERM

say "starting rsyslogd"
rm -f /dev/log
# The daemons get no stdout/stderr of ours: a caller reading our output
# through a pipe would otherwise wait for them to exit.
env TZ=UTC rsyslogd -f "$WORK/rsyslog.conf" -i "$WORK/rsyslogd.pid" </dev/null >/dev/null 2>&1
for _ in $(seq 50); do [ -S /dev/log ] && [ -s "$WORK/rsyslogd.pid" ] && break; sleep 0.2; done
[ -S /dev/log ] || { echo "rsyslogd did not create /dev/log" >&2; exit 1; }

say "starting dovecot"
rm -f /var/spool/postfix/private/auth /var/spool/postfix/private/dovecot-lmtp
env TZ=UTC dovecot -c "$DOVECOT_CONF" </dev/null >/dev/null 2>&1
for _ in $(seq 50); do
    [ -S /var/spool/postfix/private/auth ] && listening 143 110 && break
    sleep 0.2
done
[ -S /var/spool/postfix/private/dovecot-lmtp ] && listening 143 110 \
    || { echo "dovecot is not listening" >&2; exit 1; }

say "starting postfix"
env TZ=UTC postfix start </dev/null >/dev/null 2>&1
for _ in $(seq 50); do listening 25 587 && break; sleep 0.2; done
listening 25 587 || { echo "postfix is not listening" >&2; exit 1; }
trap - ERR INT TERM

say "ready: SMTP 127.0.0.1:25 and :587 (AUTH), IMAP :143, POP3 :110; log $LOG"
