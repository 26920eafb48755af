#!/usr/bin/env bash
# A real SLURM cluster on this machine, for trying notus_lab's SLURM sweeps (and for CI):
# munge + MariaDB + slurmdbd (accounting: submitit needs sacct to see jobs that died) + slurmctld + slurmd.
# Partition `debug` is this machine as one node; partition `multinode` is two more slurmd daemons on the
# same machine (vnode1, vnode2, one core each), so multi-node jobs run for real: SLURM_NODEID, NodeAddr.
# No systemd or cgroups needed. Everything lives in $NOTUS_SLURM_DIR (default /tmp/notus_slurm); daemons
# are stopped by PID. Needs root (Debian packages, daemons); installs the packages if they are missing.
#
#   scripts/slurm_local.sh start     # then: export SLURM_CONF=$NOTUS_SLURM_DIR/slurm.conf (printed)
#   scripts/slurm_local.sh status
#   scripts/slurm_local.sh stop
set -euo pipefail
DIR="${NOTUS_SLURM_DIR:-/tmp/notus_slurm}"
CONF="$DIR/slurm.conf"
HOST="$(hostname -s)"
DB_PASS="notus_lab_local"   # a throwaway local database on loopback, not a secret
PACKAGES=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)
NODES=("$HOST" vnode1 vnode2)   # one slurmd each (slurm.conf below names the two virtual ones)

log() { echo "slurm_local: $*" >&2; }

pidfile() {  # munged and mariadbd drop root, so their PID files live in their own run dirs
  case "$1" in
    munged) echo /run/munge/notus_munged.pid ;;
    mariadb) echo /run/mysqld/notus_mariadb.pid ;;
    *) echo "$DIR/$1.pid" ;;
  esac
}

wait_for() {  # wait_for <seconds> <what> <command...>
  local limit=$1 what=$2; shift 2
  for _ in $(seq $((limit * 4))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
  log "$what did not come up in ${limit}s; logs in $DIR"; return 1
}

install_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${missing[@]}" >"$DIR/apt.log" 2>&1 || { apt-get update -q >>"$DIR/apt.log" 2>&1 && apt-get install -y -q "${missing[@]}" >>"$DIR/apt.log" 2>&1; }
}

write_configs() {
  local node; node="$(slurmd -C | head -1 | sed "s/^NodeName=[^ ]*/NodeName=$HOST/")"
  cat >"$CONF" <<EOF
ClusterName=notus
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool-%n
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd-%n.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd-%n.log
SlurmctldPort=${NOTUS_SLURMCTLD_PORT:-6817}
SlurmdPort=${NOTUS_SLURMD_PORT:-6818}
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=${NOTUS_SLURMDBD_PORT:-6819}
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
KillWait=10
MinJobAge=600
$node State=UNKNOWN
NodeName=vnode1 NodeHostname=$HOST NodeAddr=127.0.0.1 Port=${NOTUS_VNODE_PORT:-6821} CPUs=1 State=UNKNOWN
NodeName=vnode2 NodeHostname=$HOST NodeAddr=127.0.0.1 Port=$((${NOTUS_VNODE_PORT:-6821} + 1)) CPUs=1 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
PartitionName=multinode Nodes=vnode1,vnode2 MaxTime=INFINITE State=UP
EOF
  cat >"$DIR/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=${NOTUS_SLURMDBD_PORT:-6819}
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StoragePort=3306
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=notus_slurm_acct
PidFile=$DIR/slurmdbd.pid
LogFile=$DIR/slurmdbd.log
EOF
  chmod 600 "$DIR/slurmdbd.conf"
}

start() {
  mkdir -p "$DIR/state" "${NODES[@]/#/$DIR/spool-}"
  if [ -f "$(pidfile slurmctld)" ] && kill -0 "$(cat "$(pidfile slurmctld)")" 2>/dev/null; then
    log "already running"; echo "export SLURM_CONF=$CONF"; return 0
  fi
  install_packages
  write_configs

  # munge: the cluster's authentication
  mkdir -p /run/munge && chown munge:munge /run/munge
  [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
  if ! munge -n >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged --pid-file="$(pidfile munged)" 2>>"$DIR/munged.log" || /usr/sbin/munged --force --pid-file="$(pidfile munged)"
    wait_for 10 munged munge -n
  fi

  # MariaDB: slurmdbd's storage
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  if ! mariadb -e "select 1" >/dev/null 2>&1; then
    [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >"$DIR/mariadb-install.log" 2>&1
    /usr/sbin/mariadbd --user=mysql --datadir=/var/lib/mysql --socket=/run/mysqld/mysqld.sock \
      --pid-file="$(pidfile mariadb)" --bind-address=127.0.0.1 >"$DIR/mariadb.log" 2>&1 &
    wait_for 30 mariadb mariadb -e "select 1"
  fi
  mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
              GRANT ALL ON notus_slurm_acct.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"

  # accounting daemon (it reads slurmdbd.conf next to $SLURM_CONF), then the cluster's record in it
  export SLURM_CONF="$CONF"
  /usr/sbin/slurmdbd
  wait_for 30 slurmdbd sacctmgr -n list cluster
  sacctmgr -i add cluster notus >/dev/null 2>&1 || true

  /usr/sbin/slurmctld -f "$CONF"
  wait_for 30 slurmctld scontrol ping
  for node in "${NODES[@]}"; do /usr/sbin/slurmd -f "$CONF" -N "$node"; done
  wait_for 60 "nodes ${NODES[*]} idle" bash -c "[ \"\$(sinfo -h -N -o %T | grep -cx idle)\" -eq ${#NODES[@]} ]"
  log "cluster up (partition debug: node $HOST; partition multinode: vnode1, vnode2); state and logs in $DIR"
  echo "export SLURM_CONF=$CONF"
}

stop() {
  export SLURM_CONF="$CONF"
  [ -f "$CONF" ] && scancel --user="$(id -un)" >/dev/null 2>&1 || true
  for name in "${NODES[@]/#/slurmd-}" slurmctld slurmdbd mariadb munged; do
    local pidfile; pidfile="$(pidfile "$name")"
    [ -f "$pidfile" ] || continue
    local pid; pid="$(cat "$pidfile")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 80); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  done
  log "stopped"
}

status() {
  export SLURM_CONF="$CONF"
  for name in munged mariadb slurmdbd slurmctld "${NODES[@]/#/slurmd-}"; do
    local pidfile state="down"; pidfile="$(pidfile "$name")"
    [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && state="up (pid $(cat "$pidfile"))"
    echo "$name: $state"
  done
  sinfo 2>/dev/null || true
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
