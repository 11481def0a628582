#!/bin/sh
# Entry point of the pagila-tasks image: run the given command as PID 1's child (compose adds
# `init: true`), so `docker stop` reaches Celery as SIGTERM and starts its warm shutdown.
set -eu

if [ "$#" -eq 0 ]; then
    echo "usage: <command> [args...], e.g. celery -A pagila_tasks worker -Q copy,control" >&2
    exit 2
fi

# Spilled COPY buffers go to TMPDIR; fail early and clearly when it is not writable.
tmp="${TMPDIR:-/tmp}"
if [ ! -w "$tmp" ]; then
    echo "entrypoint: TMPDIR $tmp is not writable by $(id -un)" >&2
    exit 2
fi

exec "$@"
