#!/bin/sh
# Records that it ran: appends its pid to FILE at the start and "done" to FILE after sleeping
# SECONDS. Tests use it to count how many times a job really ran to completion.
# Usage: mark.sh FILE [SECONDS]
file="$1"
seconds="${2:-1}"
echo "start $$" >> "$file"
sleep "$seconds"
echo "done $$" >> "$file"
