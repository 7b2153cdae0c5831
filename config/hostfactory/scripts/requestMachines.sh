#!/bin/sh
# HostFactory provider script requestMachines: runs as "requestMachines.sh -f FILE".
exec "$(dirname "$0")/invoke_provider.sh" requestMachines "$@"
