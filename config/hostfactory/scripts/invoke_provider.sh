#!/bin/sh
# Shared body of the five HostFactory provider scripts: POST the JSON that HostFactory wrote
# into the -f file (stdin when there is no -f) to the ohfp service and print its answer.
#
# stdout carries only the answer's JSON; diagnostics go to stderr. Exit 0 when the service
# accepted the call, 1 when it rejected it or could not be reached (a JSON `message` is still
# printed), 128 + its number when a signal ends it. OHFP_URL and OHFP_TOKEN come from the
# environment, else from ohfp.env beside this script (shell syntax: OHFP_URL=http://…).
# OHFP_URL may list several replicas' URLs (separated by commas and/or spaces): they are tried
# in order, the next only when one cannot be reached. OHFP_TIMEOUT (seconds, default 30) bounds
# a call, OHFP_CONNECT_TIMEOUT (seconds, default 5) the connection to each replica.
call=$1
shift

file=
while [ $# -gt 0 ]; do
    case $1 in
        -f) file=$2; shift 2 ;;
        -f*) file=${1#-f}; shift ;;
        *) shift ;;
    esac
done

# Shell expansions, not dirname: no process is started for them. $0 is the script HostFactory
# ran (these lines are read into it).
case $0 in */*) here=${0%/*} ;; *) here=. ;; esac
env_url=$OHFP_URL
env_token=$OHFP_TOKEN
if [ -r "$here/ohfp.env" ]; then
    # shellcheck disable=SC1091
    . "$here/ohfp.env"
fi
# The environment wins over the file.
url=${env_url:-${OHFP_URL:-http://127.0.0.1:8000}}
token=${env_token:-$OHFP_TOKEN}
timeout=${OHFP_TIMEOUT:-30}
connect_timeout=${OHFP_CONNECT_TIMEOUT:-5}

fail() {
    # A message HostFactory can log, without characters that would break the JSON.
    msg=$(printf '%s' "$1" | tr -d '"\\' | tr '\n\t' '  ')
    printf '{"message": "%s"}\n' "$msg"
    printf '%s: %s\n' "$call" "$1" >&2
    exit 1
}

if [ -n "$file" ] && [ ! -r "$file" ]; then
    fail "cannot read input file $file"
fi

# The directory holds the bearer token: it goes on every way out. A shell killed by a signal
# runs no EXIT trap, so each signal that ends it (HostFactory closing the pipe the answer goes
# to is SIGPIPE) is turned into an exit with the usual status, 128 + the signal's number.
work=
curl_pid=
trap '[ -z "$curl_pid" ] || kill "$curl_pid" 2>/dev/null; [ -z "$work" ] || rm -rf "$work"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 131' QUIT
trap 'exit 141' PIPE
trap 'exit 143' TERM
work=$(mktemp -d 2>/dev/null) || fail "cannot create a temporary directory"
umask 077
: > "$work/headers"
if [ -n "$token" ]; then
    # Passed in a file so that the token does not show in the process list.
    printf 'Authorization: Bearer %s\n' "$token" > "$work/headers"
fi

if [ -z "$file" ]; then
    file=$work/input
    cat > "$file"
fi
# OHFP_URL may list replicas (commas and/or spaces): the positional parameters, read above,
# take the list (field splitting, no process; -f so that no URL is read as a file pattern).
saved_ifs=$IFS
IFS=', '
set -f
# shellcheck disable=SC2086
set -- $url
set +f
IFS=$saved_ifs
tried=
reached=
for base in "$@"; do
    # curl runs in the background and the shell waits for it: `wait` returns as soon as a
    # trapped signal arrives, so the trap runs mid-call (a shell waiting on a command
    # substitution may only run it once curl is done, and then report curl's failure instead
    # of the signal).
    curl -sS --max-time "$timeout" --connect-timeout "$connect_timeout" -X POST \
        -H 'Content-Type: application/json' -H "@$work/headers" \
        --data-binary "@$file" \
        -o "$work/body" -w '%{http_code} %{num_connects}' \
        "$base/api/v1/hostfactory/$call" > "$work/code" 2>"$work/err" &
    curl_pid=$!
    wait "$curl_pid"
    status=$?
    curl_pid=
    code=
    connects=
    read -r code connects < "$work/code" || :
    # Only a failure to reach this replica moves on to the next: not resolved (6), not
    # connected (7), no connection within the connect timeout (28 with no connection made),
    # the connection closed (52) or broken while sending (55) or receiving (56) without an
    # answer. Any HTTP answer, and a timeout once connected (the call may be under way), is
    # final.
    case $status in
        6 | 7 | 52 | 55 | 56) ;;
        28) [ "$connects" = 0 ] || { reached=$base; break; } ;;
        *) reached=$base; break ;;
    esac
    why=
    IFS= read -r why < "$work/err" || :
    tried="$tried${tried:+; }$base: ${why#curl: }"
done
if [ -z "$reached" ]; then
    [ -n "$tried" ] || fail "OHFP_URL names no ohfp service"
    fail "ohfp service unreachable at $tried"
fi
if [ "$status" -ne 0 ]; then
    fail "ohfp service at $reached did not answer: $(cat "$work/err")"
fi
case $code in
    2??)
        cat "$work/body"
        echo
        exit 0
        ;;
    *)
        if grep -q '"message"' "$work/body" 2>/dev/null; then
            cat "$work/body"
            echo
            printf '%s: rejected with HTTP %s\n' "$call" "$code" >&2
            exit 1
        fi
        fail "ohfp answered HTTP $code: $(head -c 300 "$work/body")"
        ;;
esac
