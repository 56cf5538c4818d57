#!/usr/bin/env bash
# tests/slurm/up.sh DIR — start a private single-node Slurm (munged, slurmctld,
# slurmd) with all its state, keys, logs and sockets under DIR; no systemd, no
# cgroups, no accounting. Ports are picked free, so it does not clash with
# another Slurm on the machine. On success it prints the line
#     export SLURM_CONF=DIR/slurm.conf
# and exits 0; where Slurm cannot start it prints one line saying why and
# exits 1 (tests then SKIP). Stop it with tests/slurm/down.sh DIR.
#
# Needs root (slurmd runs the jobs as the submitting user) and Debian's
# slurm-wlm, slurmctld, slurmd, slurm-client and munge (make deps). CPUS=N
# declares N CPUs (default: nproc; more lets small jobs share the node). Timing
# knobs are short, for tests: the scheduler looks every second, cred_expire 10 s (a requeued job starts again
# after 11 s, not 121), KillWait 2 s, MinJobAge 300 s (finished jobs stay
# visible to scontrol), OverTimeLimit 0.
set -u
S=${1:?usage: tests/slurm/up.sh DIR}
why() { echo "tests/slurm/up.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || why "needs root (slurmd must run jobs as their user)"
for b in munged slurmctld slurmd sbatch srun scontrol sinfo; do
    command -v $b >/dev/null 2>&1 || [ -x /usr/sbin/$b ] || why "'$b' not installed (make deps: slurm-wlm slurmctld slurmd slurm-client munge)"
done
id munge >/dev/null 2>&1 || why "no 'munge' user (package munge not installed)"
PATH=$PATH:/usr/sbin

mkdir -p "$S"
S=$(cd "$S" && pwd)
mkdir -p "$S/munge" "$S/state" "$S/spool" "$S/log" "$S/tmp"
# munged checks that every directory above its files is not writable by others
# (unless sticky) and that the munge user can reach them
chmod 0755 "$S"
d=$S
while [ "$d" != / ]; do
    d=$(dirname "$d")
    perm=$(stat -c %a "$d")
    case $perm in
    ?[2367]? | ?????[2367]) [ -k "$d" ] || why "$d is group/world-writable: munged refuses it" ;;
    esac
    runuser -u munge -- test -x "$d" || why "the munge user cannot enter $d"
done
chown munge:munge "$S/munge"
chmod 0711 "$S/munge"
# a private key: never touches /etc/munge
dd if=/dev/urandom of="$S/munge/munge.key" bs=1024 count=1 status=none || why "cannot write the munge key"
chown munge:munge "$S/munge/munge.key"
chmod 0400 "$S/munge/munge.key"

# two free TCP ports for slurmctld and slurmd
free_port() {
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 20000))
        if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo $p; return 0; fi
    done
    return 1
}
P1=$(free_port) || why "no free port"
P2=$(free_port) || why "no free port"
[ "$P1" != "$P2" ] || P2=$((P1 + 1))

H=$(hostname -s)
# CPUS: the node's CPU count as Slurm sees it (default: the real one); more
# than the real count lets tests run several small jobs side by side
NCPU=${CPUS:-$(nproc)}
cat >"$S/slurm.conf" <<CONF
# written by tests/slurm/up.sh: a private single-node test cluster
ClusterName=yototest
SlurmctldHost=$H(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$S/munge/munge.socket.2,cred_expire=10
MpiDefault=pmix
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
ReturnToService=2
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
SlurmctldPort=$P1
SlurmdPort=$P2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
TmpFS=$S/tmp
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=2
OverTimeLimit=0
MinJobAge=300
SlurmdParameters=config_overrides
NodeName=$H NodeAddr=127.0.0.1 CPUs=$NCPU Boards=1 SocketsPerBoard=1 CoresPerSocket=$NCPU ThreadsPerCore=1 RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=$H Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
export SLURM_CONF=$S/slurm.conf

runuser -u munge -- munged --socket="$S/munge/munge.socket.2" --key-file="$S/munge/munge.key" \
    --pid-file="$S/munge/munged.pid" --log-file="$S/munge/munged.log" --seed-file="$S/munge/munged.seed" \
    || why "munged did not start: $(tail -n 3 "$S/munge/munged.log" 2>/dev/null)"
slurmctld -f "$S/slurm.conf" || why "slurmctld did not start: $(tail -n 3 "$S/log/slurmctld.log" 2>/dev/null)"
slurmd -f "$S/slurm.conf" || why "slurmd did not start: $(tail -n 3 "$S/log/slurmd.log" 2>/dev/null)"
state=
for _ in $(seq 1 80); do
    state=$(sinfo -h -o %T 2>/dev/null)
    [ "$state" = idle ] && break
    sleep 0.25
done
[ "$state" = idle ] || why "node not idle after 20 s (state '$state'); logs in $S/log"
echo "export SLURM_CONF=$S/slurm.conf"
