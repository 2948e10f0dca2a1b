#!/bin/sh
# Fails on purpose: one line on each stream, then exit status 3 (used by retry and DLQ tests).
echo "fail.sh: about to fail"
echo "fail.sh: failing on purpose with exit status 3" >&2
exit 3
