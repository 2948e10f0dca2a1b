#!/bin/sh
# mark.sh that also says where it ran: appends "start PID NANOS DIR" to FILE (DIR is the job's
# working directory, inside its worker's workspace), sleeps SECONDS, then appends
# "done PID NANOS DIR". The crash loop uses DIR to tell which worker ran each attempt.
# Usage: mark_where.sh FILE [SECONDS]
file="$1"
seconds="${2:-1}"
echo "start $$ $(date +%s%N) $PWD" >> "$file"
sleep "$seconds"
echo "done $$ $(date +%s%N) $PWD" >> "$file"
