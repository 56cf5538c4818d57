#!/usr/bin/env bash
# tests/slurm/down.sh DIR — stop the Slurm that tests/slurm/up.sh DIR started:
# scontrol shutdown (slurmctld and slurmd), then munged, each by its pid file;
# whatever still runs after 10 s gets SIGKILL. Never touches another Slurm.
S=${1:?usage: tests/slurm/down.sh DIR}
PATH=$PATH:/usr/sbin
export SLURM_CONF=$S/slurm.conf
[ -f "$SLURM_CONF" ] && scontrol shutdown >/dev/null 2>&1
stop_pid() { # stop_pid PIDFILE
    local pid
    pid=$(cat "$1" 2>/dev/null)
    [ -n "$pid" ] || return 0
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.25; done
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null
}
stop_pid "$S/slurmctld.pid"
stop_pid "$S/slurmd.pid"
mpid=$(cat "$S/munge/munged.pid" 2>/dev/null)
if [ -n "$mpid" ]; then
    kill -TERM "$mpid" 2>/dev/null
    for _ in $(seq 1 40); do kill -0 "$mpid" 2>/dev/null || break; sleep 0.25; done
fi
exit 0
