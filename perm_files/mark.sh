#!/bin/sh
# Records that it ran: appends "start PID NANOS" to FILE, sleeps SECONDS, then appends
# "done PID NANOS". Tests use it to count how many times a job really ran to completion, and
# in which order jobs ran.
# Usage: mark.sh FILE [SECONDS]
file="$1"
seconds="${2:-1}"
echo "start $$ $(date +%s%N)" >> "$file"
sleep "$seconds"
echo "done $$ $(date +%s%N)" >> "$file"
