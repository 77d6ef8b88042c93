#!/usr/bin/env bash
# Prints one interpreter path per line: every CPython >= 3.11 on this machine
# (pyenv versions first, then python3.X on PATH), newest minor last, no duplicates.
# `make test` runs the suite on each of them.
set -u
declare -A seen
out=()
add() {
    local py=$1 ver
    ver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2]) if sys.version_info >= (3, 11) and sys.implementation.name == "cpython" else None' 2>/dev/null) || return
    [ -n "$ver" ] && [ "$ver" != None ] || return
    [ -n "${seen[$ver]:-}" ] && return
    seen[$ver]=1
    out+=("$ver $py")
}
root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
for d in "$root"/versions/3.*; do
    [ -x "$d/bin/python" ] && add "$d/bin/python"
done
for v in 3.11 3.12 3.13 3.14; do
    p=$(command -v "python$v" 2>/dev/null) && add "$p"
done
p=$(command -v python3 2>/dev/null) && add "$p"
printf '%s\n' "${out[@]}" | sort -V | cut -d' ' -f2-
