#!/bin/sh
echo "fake pusher: never run by analysis tests" >&2
exit 1
