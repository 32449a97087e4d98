# Shared by setup.sh and teardown.sh (sourced, not run). The paths here are
# also in tests/it/e2e.rs.

WORK=/var/tmp/mailtrail-e2e              # everything this test keeps
LOGDIR=$WORK/log                         # rsyslogd writes here
LOG=$LOGDIR/mail.log                     # Postfix and Dovecot, what serve follows
MAILROOT=$WORK/mail                      # maildirs, owned by vmail
RUNDIR=$WORK/dovecot                     # Dovecot's base_dir
DOVECOT_CONF=$WORK/dovecot.conf
CURRENT=$WORK/test/current               # the test's binary, config, database
PIPE_USER=mailtrail-e2e                  # runs `mailtrail request` for the pipe
PASSWORD=e2e-Secret-7                    # every test mailbox's password

# listening PORT...: all of them listen on 127.0.0.1. Reads /proc/net/tcp
# instead of connecting, so no probe shows up in the log.
listening() {
    local p
    for p in "$@"; do
        grep -qi " 0100007F:$(printf '%04X' "$p") 00000000:0000 0A " /proc/net/tcp || return 1
    done
}

# stop_pidfile FILE: TERM the process whose pid FILE holds, wait for it.
stop_pidfile() {
    local f=$1 pid
    [ -s "$f" ] || return 0
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
    rm -f "$f"
}

# Postfix (its master's pid file), Dovecot (its master's), rsyslogd (ours).
stop_all() {
    if postfix status >/dev/null 2>&1; then postfix stop >/dev/null 2>&1 || true; fi
    if [ -f "$DOVECOT_CONF" ] && [ -s "$RUNDIR/master.pid" ]; then
        dovecot -c "$DOVECOT_CONF" stop >/dev/null 2>&1 || true
        for _ in $(seq 50); do [ -e "$RUNDIR/master.pid" ] || break; sleep 0.2; done
    fi
    stop_pidfile "$RUNDIR/master.pid"
    stop_pidfile "$WORK/rsyslogd.pid"
}
