#!/bin/sh
# HostFactory provider script getAvailableTemplates: runs as "getAvailableTemplates.sh -f FILE".
exec "$(dirname "$0")/invoke_provider.sh" getAvailableTemplates "$@"
