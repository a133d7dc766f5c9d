#!/bin/sh
# The watchdog image's entrypoint. Started as root (the manifests' runAsUser: 0, holding only SYS_PTRACE, KILL,
# DAC_READ_SEARCH, SETUID and SETGID), it becomes the unprivileged user WATCHDOG_UID (10001) keeping exactly
# three capabilities as ambient ones, the same as the systemd unit gives:
#   sys_ptrace       py-spy reads the workers' stacks;
#   kill             a recycle signals a worker that runs as another user;
#   dac_read_search  /proc/PID/fd of another user (open fds), an interpreter under a private directory.
# SETUID/SETGID serve this one step and are gone after it (not ambient; no_new_privs keeps them from coming
# back). Kubernetes cannot do this itself: runtimes give a non-root container no ambient capabilities.
# Started as any other user, it runs the watchdog as that user, without capabilities.
set -eu
caps=+sys_ptrace,+kill,+dac_read_search
if [ "$(id -u)" = 0 ]; then
  exec setpriv --reuid="${WATCHDOG_UID:-10001}" --regid="${WATCHDOG_GID:-10001}" --clear-groups \
    --inh-caps="-all,$caps" --ambient-caps="$caps" -- watchdog "$@"
fi
exec watchdog "$@"
