#!/bin/sh
# Lists every #include "X/..." in src/Y/ whose layer X is above Y's (DESIGN §1: core <- engine <-
# store <- query <- net <- server; analytics sits beside store, include/cascade/ is the engine's
# public face). Prints one line per upward include and exits 1 if there is any; -a lists all.
# A directory not ranked here (a new layer) is listed with "?" and not judged.
# Then tools/ and bench/, which reach the library only through include/cascade/ (issue 17): any
# #include "X/..." there whose X is a directory under src/, or any path that climbs out with
# "../" (engine-bench once reached ../src/engine/persist.h so), is listed as SRC and fails too.
cd "$(dirname "$0")/.." || exit 2
rank() {
    # core modules that are public (for the clients and tools) rank as core
    case $1 in
    cascade/mp.h | cascade/hash.h | cascade/u64map.h | cascade/strbuf.h) echo 0; return ;;
    esac
    case $1 in cascade/wal.h) echo 2; return ;; esac
    case ${1%%/*} in
    core) echo 0 ;; engine | cascade | proto | gen | format) echo 1 ;;
    store | analytics | client) echo 2 ;;
    query) echo 3 ;; net) echo 4 ;; server | cluster) echo 5 ;; *) echo 9 ;;
    esac
}
all=0; [ "$1" = -a ] && all=1
up=0
grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]+"[a-z_]+/' src --include='*.[ch]' |
    sed -E 's|^src/([^/]+)/([^:]+):([0-9]+):.*"([^/]+)/([^"]+)".*|\1 \2:\3 \4/\5|' | {
    while read -r from where to; do
        rf=$(rank "$from"); rt=$(rank "$to")
        if [ "$rf" = 9 ] || [ "$rt" = 9 ]; then
            echo "?    src/$from/$where -> $to (layer not ranked in $0)"
        elif [ "$rt" -gt "$rf" ]; then
            echo "UP   src/$from/$where -> $to"; up=$((up + 1))
        elif [ $all = 1 ]; then
            echo "ok   src/$from/$where -> $to"
        fi
    done
    echo "$up upward include(s)" >&2
    [ $up = 0 ]
}
layers=$?
grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]+"(\.\./)*[a-z_]+/' tools bench --include='*.[ch]' |
    sed -E 's|^([^:]+:[0-9]+):.*"([^"]+)".*|\1 \2|' | {
    n=0
    while read -r where to; do
        case $to in ../*src/*) to=${to#"${to%%src/*}"}; to=${to#src/} ;; esac
        if [ -d "src/${to%%/*}" ] || [ "${to#../}" != "$to" ]; then
            echo "SRC  $where -> $to"; n=$((n + 1))
        elif [ $all = 1 ]; then
            echo "ok   $where -> $to"
        fi
    done
    echo "$n include(s) of src/ in tools/ and bench/" >&2
    [ $n = 0 ]
} && [ $layers = 0 ]
