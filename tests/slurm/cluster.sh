#!/usr/bin/env bash
# A throw-away one-node SLURM cluster for tests: munge + slurmctld + slurmd + one fake GPU.
#
#   cluster.sh install          apt-get the Debian packages if missing (needs root)
#   cluster.sh start DIR        write configs under DIR, start the daemons, wait for the node
#   cluster.sh stop DIR         cancel the jobs, stop the daemons by the PIDs recorded in DIR
#
# Everything lives in DIR (keys, sockets, state, logs, slurm.conf); nothing is written to /etc.
# `start` prints shell `export` lines (SLURM_CONF, PATH with an `srun` wrapper) on stdout that
# callers apply to the processes that talk to the cluster. Every wait is bounded.
set -euo pipefail

PACKAGES=(munge slurmctld slurmd slurm-client)
# Ports off SLURM's defaults (6817/6818) so a real slurm on the host is never disturbed.
CTLD_PORT=${COADDBLISS_SLURMCTLD_PORT:-16817}
SLURMD_PORT=${COADDBLISS_SLURMD_PORT:-16818}

log() { echo "[cluster.sh] $*" >&2; }

install_packages() {
    local missing=()
    for cmd in munged slurmctld slurmd sbatch; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
    done
    # slurmd must run as root (it starts jobs as their users): without root there is no cluster.
    if [ "$(id -u)" -ne 0 ]; then
        log "not root: cannot run slurmd (nor apt-get install ${missing[*]:-})"
        return 1
    fi
    if [ ${#missing[@]} -eq 0 ]; then
        log "SLURM and munge already installed"
        return 0
    fi
    log "missing ${missing[*]}: installing ${PACKAGES[*]}"
    # The image's policy-rc.d keeps the packages' own services from starting: we start ours.
    export DEBIAN_FRONTEND=noninteractive
    timeout -k 10 300 apt-get update -qq >&2 || return 1
    timeout -k 10 600 apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >&2 || return 1
}

# wait_for SECONDS CMD...: poll CMD every 0.5 s until it succeeds or SECONDS pass.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then return 1; fi
        sleep 0.5
    done
}

start_cluster() {
    local dir
    dir=$(realpath -m "$1")
    mkdir -p "$dir"/{munge,state,spool,log,bin}
    chmod 0700 "$dir/munge"
    local host cpus mem_mb
    host=$(hostname -s)
    # Declared size: at least 8 CPUs and 64 GB so that the profile's per-rule requests fit on a
    # small CI machine (config_overrides makes slurmd accept more than the hardware has).
    cpus=$(($(nproc) > 8 ? $(nproc) : 8))
    mem_mb=$(awk '/MemTotal/ {m = int($2 / 1024); print (m > 65536 ? m : 65536)}' /proc/meminfo)

    # munge: own key, socket and pid file. The socket directory must be 0755 for clients.
    local msock="$dir/munge/sock/munge.socket.2"
    mkdir -p "$dir/munge/sock"
    chmod 0755 "$dir/munge/sock"
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
    chmod 0400 "$dir/munge/munge.key"
    munged --force --socket="$msock" --key-file="$dir/munge/munge.key" \
        --pid-file="$dir/munged.pid" --log-file="$dir/log/munged.log" \
        --seed-file="$dir/munge/munged.seed"
    wait_for 10 test -S "$msock" || { log "munged did not start"; cat "$dir/log/munged.log" >&2; return 1; }

    cat >"$dir/slurm.conf" <<EOF
# Written by tests/slurm/cluster.sh: one node on the loopback address (no DNS needed), one fake
# GPU, no accounting.
ClusterName=coaddbliss
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$msock
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
ReturnToService=2
# Finished jobs stay visible to squeue for 5 minutes: the profile's squeue status checks need it.
MinJobAge=300
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
GresTypes=gpu
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    # A count-only gres entry registers 0 GPUs and the node goes INVAL: give it a device file.
    echo "Name=gpu File=/dev/null" >"$dir/gres.conf"

    # The jobstep plugin drops SLURM_CONF before calling srun inside a job: re-export it.
    cat >"$dir/bin/srun" <<EOF
#!/bin/sh
export SLURM_CONF="$dir/slurm.conf"
exec $(command -v srun) "\$@"
EOF
    chmod +x "$dir/bin/srun"

    export SLURM_CONF="$dir/slurm.conf"
    slurmctld -i
    wait_for 20 scontrol ping || { log "slurmctld did not answer"; tail -20 "$dir/log/slurmctld.log" >&2; return 1; }
    slurmd
    # The node must come up idle (not down, not inval) before jobs are submitted.
    wait_for 30 bash -c "sinfo -h -N -o %t | grep -qx idle" || {
        log "node never became idle: $(sinfo -h -N -o '%t %E' 2>&1)"
        tail -20 "$dir/log/slurmd.log" >&2
        return 1
    }
    log "cluster up in $dir (node $host, $cpus CPUs, $mem_mb MB, gpu:1)"
    echo "export SLURM_CONF=$dir/slurm.conf"
    echo "export PATH=$dir/bin:\$PATH"
}

# kill_pidfile FILE NAME: SIGTERM the PID in FILE, wait up to 10 s, then SIGKILL.
kill_pidfile() {
    local file=$1 name=$2 pid
    [ -s "$file" ] || return 0
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        wait_for 10 bash -c "! kill -0 $pid" || { log "$name ($pid) ignored SIGTERM: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; }
        log "stopped $name ($pid)"
    fi
    rm -f "$file"
}

stop_cluster() {
    local dir
    dir=$(realpath -m "$1")
    export SLURM_CONF="$dir/slurm.conf"
    if [ -s "$dir/slurmctld.pid" ] && kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null; then
        # Cancel what is left so that slurmd ends the job steps it started before it stops.
        timeout -k 2 10 scancel --full --user=root >/dev/null 2>&1 || true
        wait_for 15 bash -c "[ -z \"\$(squeue -h -t R,CG,PD -o %i)\" ]" || log "jobs still listed after scancel"
    fi
    kill_pidfile "$dir/slurmd.pid" slurmd
    kill_pidfile "$dir/slurmctld.pid" slurmctld
    kill_pidfile "$dir/munged.pid" munged
}

case "${1:-}" in
install) install_packages ;;
start) start_cluster "${2:?usage: cluster.sh start DIR}" ;;
stop) stop_cluster "${2:?usage: cluster.sh stop DIR}" ;;
*)
    echo "usage: cluster.sh install | start DIR | stop DIR" >&2
    exit 2
    ;;
esac
