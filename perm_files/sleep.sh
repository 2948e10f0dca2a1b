#!/bin/sh
# Sleeps N seconds (default 5; fractions allowed), then says so. A stand-in for a long job.
seconds="${1:-5}"
echo "sleep.sh: sleeping ${seconds}s"
sleep "$seconds"
echo "sleep.sh: slept ${seconds}s"
