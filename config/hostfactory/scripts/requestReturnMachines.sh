#!/bin/sh
# HostFactory provider script requestReturnMachines: runs as "requestReturnMachines.sh -f FILE".
exec "$(dirname "$0")/invoke_provider.sh" requestReturnMachines "$@"
