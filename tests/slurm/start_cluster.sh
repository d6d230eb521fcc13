#!/usr/bin/env bash
# Start a single-node SLURM cluster on localhost, with job accounting, for the tests.
#
#   tests/slurm/start_cluster.sh STATE_DIR
#
# Everything it writes (configs, munge key, MariaDB data, spool, logs, pid files) goes
# under STATE_DIR, except two things at fixed paths (reasons below): munged's default
# socket /run/munge/munge.socket.2 and a symlink /etc/slurm/slurm.conf ->
# STATE_DIR/slurm.conf (made only where no slurm.conf exists). Other clients can also
# `export SLURM_CONF=STATE_DIR/slurm.conf` (the last line printed). Needs root and the
# Debian packages munge, slurmctld, slurmd, slurm-client, slurmdbd and mariadb-server
# (installed by .ci/run). Idempotent: a daemon whose pid file names a live process is
# left alone. stop_cluster.sh STATE_DIR stops exactly the daemons started here.
#
# The node has this machine's cores and 90 % of its memory; partitions `main` (default)
# and `gpu` (the same node, with one GPU declared on /dev/null, no device behind it, to
# exercise the profile's GPU path). Account `rtmlci` holds user root.
# Accounting goes through slurmdbd and MariaDB because the executor plugin asks `sacct`
# for job states; the job comment (the plugin's rule + wildcards) is stored too.
# Memory is enforced without cgroups (jobacct_gather/linux with OverMemoryKill, polled
# every second): a step that outgrows --mem is killed and the job ends FAILED.
# Process tracking is linuxproc: no systemd, no cgroup needed.
#
# Ports (override with the environment): SLURMCTLD_PORT 16817, SLURMD_PORT 16818,
# SLURMDBD_PORT 16819, MARIADB_PORT 13306; all bound to 127.0.0.1.
set -euo pipefail

STATE=${1:?usage: start_cluster.sh STATE_DIR}
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
CTLD_PORT=${SLURMCTLD_PORT:-16817}
SLURMD_PORT=${SLURMD_PORT:-16818}
DBD_PORT=${SLURMDBD_PORT:-16819}
DB_PORT=${MARIADB_PORT:-13306}
CLUSTER=${SLURM_CLUSTER_NAME:-rtmlci}
NODE=$(hostname -s)

die() { echo "start_cluster.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (the SLURM daemons run as root here)"
for exe in munged slurmctld slurmd slurmdbd sacctmgr sinfo mariadbd mariadb-install-db mariadb; do
    command -v "$exe" >/dev/null || die "$exe not found (apt-get install munge slurmctld slurmd slurm-client slurmdbd mariadb-server)"
done

mkdir -p "$STATE"/{log,run,spool/ctld,spool/d,munge}
export SLURM_CONF="$STATE/slurm.conf"

running() {  # running NAME: the pid file names a live process
    local pid
    pid=$(cat "$STATE/run/$1.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local seconds=$1 what=$2; shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || die "timed out after ${seconds}s waiting for $what (logs in $STATE/log)"
        sleep 0.5
    done
}

# --- munge: slurmdbd's clients only look at the default socket (AuthInfo=socket= is not
# honoured on that path in 22.05), so munged must listen there. A munged already answering
# on it is reused (and not stopped later); otherwise one is started with a key of our own.
MUNGE_SOCKET=/run/munge/munge.socket.2
munge_ok() { munge -n | unmunge >/dev/null; }
if ! munge_ok 2>/dev/null && ! running munged; then
    if [ ! -s "$STATE/munge/munge.key" ]; then
        mungekey --create --keyfile="$STATE/munge/munge.key" --force
    fi
    chmod 700 "$STATE/munge"; chmod 600 "$STATE/munge/munge.key"
    mkdir -p "$(dirname "$MUNGE_SOCKET")"
    munged --force --key-file="$STATE/munge/munge.key" --socket="$MUNGE_SOCKET" \
        --pid-file="$STATE/run/munged.pid" --log-file="$STATE/log/munged.log" \
        --seed-file="$STATE/munge/munge.seed"
fi
wait_for 20 munged munge_ok
AUTH="AuthType=auth/munge"

# --- MariaDB for slurmdbd: private data directory, TCP on 127.0.0.1 only -----------------
if [ ! -d "$STATE/mysql/mysql" ]; then
    mariadb-install-db --user=root --datadir="$STATE/mysql" --auth-root-authentication-method=normal \
        --skip-test-db >"$STATE/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed (see $STATE/log/mariadb-install.log)"
fi
if ! running mariadbd; then
    mariadbd --no-defaults --user=root --datadir="$STATE/mysql" --socket="$STATE/run/mysql.sock" \
        --port="$DB_PORT" --bind-address=127.0.0.1 --pid-file="$STATE/run/mariadbd.pid" \
        --log-error="$STATE/log/mariadb.log" --innodb-buffer-pool-size=64M \
        --skip-log-bin >/dev/null 2>&1 &
fi
wait_for 60 MariaDB mariadb --no-defaults --socket="$STATE/run/mysql.sock" -uroot -e "select 1"

# --- configuration ----------------------------------------------------------------------
CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)

cat >"$STATE/slurmdbd.conf" <<CONF
$AUTH
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=root
StorageLoc=slurm_acct_db_$CLUSTER
CONF
chmod 600 "$STATE/slurmdbd.conf"

cat >"$STATE/slurm.conf" <<CONF
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
$AUTH
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
# no systemd, no cgroups: track processes by parent pid, no task affinity plugin
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# accounting through slurmdbd (sacct is how the executor plugin reads job states)
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
AccountingStorageEnforce=associations
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
# kill a step that outgrows its --mem (state OUT_OF_MEMORY), without cgroups
JobAcctGatherParams=OverMemoryKill
# finished jobs stay visible to squeue for 5 minutes
MinJobAge=300
ReturnToService=2
SchedulerType=sched/backfill
MpiDefault=none
SlurmctldTimeout=30
SlurmdTimeout=30
# one GPU "slot" without a device (gres.conf: Count only), so that --gpus=1 jobs run and
# sacct's AllocTRES shows gres/gpu; the job itself sees no GPU
GresTypes=gpu
AccountingStorageTRES=gres/gpu
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:1 State=UNKNOWN
PartitionName=main Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE Default=NO MaxTime=INFINITE State=UP
CONF

cat >"$STATE/gres.conf" <<CONF
NodeName=$NODE Name=gpu File=/dev/null
CONF

# Jobs' own SLURM commands (the executor's `srun` inside each job) do not see SLURM_CONF:
# the jobstep plugin drops SLURM_* variables before it calls srun. So the default path
# /etc/slurm/slurm.conf must lead here: a symlink, made only where no slurm.conf exists
# (stop_cluster.sh removes it again if it still points here).
if [ -L /etc/slurm/slurm.conf ] || [ -e /etc/slurm/slurm.conf ]; then
    [ "$(readlink /etc/slurm/slurm.conf)" = "$STATE/slurm.conf" ] \
        || die "/etc/slurm/slurm.conf exists and is not ours: refusing to replace it"
else
    mkdir -p /etc/slurm && ln -s "$STATE/slurm.conf" /etc/slurm/slurm.conf
fi

# --- daemons ----------------------------------------------------------------------------
running slurmdbd || slurmdbd
wait_for 60 slurmdbd sacctmgr -i show cluster
# the cluster, an account for the tests and the root user in it (all idempotent)
if ! sacctmgr -n -P show cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
fi
if ! sacctmgr -n -P show account format=account | grep -qx rtmlci; then
    sacctmgr -i add account rtmlci Description="rtml CI" Organization=rtml >/dev/null
fi
if ! sacctmgr -n -P show assoc where user=root account=rtmlci format=user | grep -qx root; then
    sacctmgr -i add user root Account=rtmlci >/dev/null
fi
running slurmctld || slurmctld
running slurmd || slurmd
wait_for 90 "node $NODE idle" sh -c "sinfo -h -N -n '$NODE' -o %t | grep -qx idle"
echo "SLURM cluster $CLUSTER up: node $NODE, $CPUS CPUs, $MEM_MB MB"
echo "export SLURM_CONF=$STATE/slurm.conf"
