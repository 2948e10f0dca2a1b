#!/bin/sh
# Starts a child process and waits for it, so that killing only the shell would orphan the
# child: process-group kill tests use it. The child's pid is written to ./child.pid (atomically,
# via rename) and printed as "child <pid>". With --ignore-term, SIGTERM is ignored by the shell
# and, being inherited, by the child too, so only SIGKILL ends them.
if [ "$1" = "--ignore-term" ]; then
    trap '' TERM
fi
sleep 600 &
child=$!
echo "$child" > child.pid.tmp && mv child.pid.tmp child.pid
echo "child $child"
wait "$child"
