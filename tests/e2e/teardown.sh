#!/bin/bash
# Stops what tests/e2e/setup.sh started (Postfix, Dovecot, rsyslogd), each
# by its pid file. Leaves the packages, users, configs and $WORK (the log,
# the mailboxes, the last test run's database and serve.log) for a look
# after a failure; setup.sh empties them on its next run.
#
#   sudo bash tests/e2e/teardown.sh

set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/common.sh
. "$HERE/common.sh"

[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
stop_all
echo "stopped postfix, dovecot and rsyslogd; files kept in $WORK"
