#!/usr/bin/env bash
# Stop the daemons that start_cluster.sh STATE_DIR started (by their pid files in
# STATE_DIR/run), newest first; waits until each has exited. Safe to run twice.
#
#   tests/slurm/stop_cluster.sh STATE_DIR [--purge]    # --purge also deletes STATE_DIR
set -uo pipefail

STATE=${1:?usage: stop_cluster.sh STATE_DIR [--purge]}
for name in slurmd slurmctld slurmdbd mariadbd munged; do
    pidfile="$STATE/run/$name.pid"
    pid=$(cat "$pidfile" 2>/dev/null) || continue
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    rm -f "$pidfile"
done
if [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$STATE/slurm.conf" ]; then
    rm -f /etc/slurm/slurm.conf
fi
if [ "${2:-}" = "--purge" ]; then
    rm -rf "$STATE"
fi
