#!/bin/sh
# HostFactory provider script getReturnRequests: runs as "getReturnRequests.sh -f FILE".
exec "$(dirname "$0")/invoke_provider.sh" getReturnRequests "$@"
