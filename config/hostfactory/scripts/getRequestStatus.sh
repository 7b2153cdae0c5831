#!/bin/sh
# HostFactory provider script getRequestStatus: runs as "getRequestStatus.sh -f FILE".
exec "$(dirname "$0")/invoke_provider.sh" getRequestStatus "$@"
