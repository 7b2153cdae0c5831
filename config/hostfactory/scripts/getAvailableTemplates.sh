#!/bin/sh
# HostFactory provider script getAvailableTemplates: runs as "getAvailableTemplates.sh -f FILE".
# The shared body is read into this shell, not started as another: HostFactory runs a script
# per call, and each process less is a millisecond less per call.
case $0 in */*) shim_dir=${0%/*} ;; *) shim_dir=. ;; esac
set -- getAvailableTemplates "$@"
. "$shim_dir/invoke_provider.sh"
