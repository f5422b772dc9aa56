#!/usr/bin/env bash
# Applies ringwsgi's benchmarking settings that are safe and reversible on this machine,
# printing each change as `old -> new`, and writes an undo script to /tmp.
#
#   tuning/apply-benchmark.sh [--dry-run] [--smt-off] [--conf FILE] [--undo-file FILE]
#
#   --dry-run     show what would change; change nothing, write no undo script
#   --smt-off     also switch SMT off (/sys/devices/system/cpu/smt/control); this takes
#                 CPUs offline, so it is opt-in
#   --conf FILE   sysctl values to apply (default: sysctl-benchmark.conf next to this script)
#   --undo-file   where to write the undo script (default /tmp/ringwsgi-undo-benchmark-<time>.sh)
#
# What it touches: the sysctls of the conf file (sysctl -w), the CPU frequency governor
# (performance), turbo/boost (off), transparent huge pages (madvise), SMT (only with
# --smt-off). Anything this machine refuses or does not have (containers, VMs without
# cpufreq) is reported as "skipped: <reason>" and the script goes on; the exit status is
# 0 unless the arguments are wrong. Run the printed undo script to restore every value
# this script changed. Process settings (pinning, RLIMIT_NOFILE) are not global: see
# tuning/README.md, "Benchmarking".
set -u

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONF="$HERE/sysctl-benchmark.conf"
DRY=0
SMT_OFF=0
UNDO=""

usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --smt-off) SMT_OFF=1 ;;
        --conf) CONF="${2:?--conf needs a file}"; shift ;;
        --undo-file) UNDO="${2:?--undo-file needs a path}"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "apply-benchmark.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
[[ -r "$CONF" ]] || { echo "apply-benchmark.sh: cannot read $CONF" >&2; exit 2; }
[[ -z "$UNDO" ]] && UNDO="/tmp/ringwsgi-undo-benchmark-$(date +%Y%m%d-%H%M%S).sh"

CHANGED=0
SKIPPED=0
UNDO_LINES=()

say() { printf '%s\n' "$*"; }
norm() { tr -s '[:space:]' ' ' <<<"$1" | sed 's/^ //; s/ $//'; }
skip() { say "  $1: skipped: $2"; SKIPPED=$((SKIPPED + 1)); }
# Quote a value for the undo script.
q() { printf '%q' "$1"; }
# add_undo WHAT OLD COMMAND...: one line of the undo script restoring WHAT to OLD.
add_undo() {
    local what="$1" old="$2"; shift 2
    UNDO_LINES+=("if $*; then echo $(q "restored $what = $old"); else echo $(q "could not restore $what = $old") >&2; fi")
}

if [[ $DRY -eq 1 ]]; then
    say "apply-benchmark.sh: dry run, nothing is changed"
elif [[ $EUID -ne 0 ]]; then
    say "apply-benchmark.sh: not root: every write below will most likely be skipped"
fi

# ---------------------------------------------------------------- sysctls
say "sysctl (from $CONF):"
while IFS= read -r line || [[ -n "$line" ]]; do
    line="${line%%#*}"
    [[ "$line" =~ ^[[:space:]]*$ ]] && continue
    if [[ "$line" != *=* ]]; then
        say "  ignored line: $line"
        continue
    fi
    key="$(norm "${line%%=*}")"
    want="$(norm "${line#*=}")"
    path="/proc/sys/${key//.//}"
    if [[ ! -e "$path" ]]; then
        skip "$key" "not present on this kernel (or not visible in this network namespace)"
        continue
    fi
    if ! old="$(sysctl -n "$key" 2>&1)"; then
        skip "$key" "cannot read: $(norm "$old")"
        continue
    fi
    old="$(norm "$old")"
    if [[ "$old" == "$want" ]]; then
        say "  $key: $old (already)"
        continue
    fi
    if [[ $DRY -eq 1 ]]; then
        say "  $key: $old -> $want (would set)"
        continue
    fi
    if ! err="$(sysctl -q -w "$key=$want" 2>&1)"; then
        skip "$key" "$old kept, kernel refused: $(norm "$err")"
        continue
    fi
    now="$(norm "$(sysctl -n "$key" 2>/dev/null)")"
    if [[ "$now" != "$want" ]]; then
        # Some kernels clamp or ignore writes (e.g. read-only /proc/sys in containers).
        skip "$key" "wrote $want but it reads $now"
        [[ "$now" != "$old" ]] && add_undo "$key" "$old" sysctl -q -w "$(q "$key=$old")"
        continue
    fi
    say "  $key: $old -> $now"
    add_undo "$key" "$old" sysctl -q -w "$(q "$key=$old")"
    CHANGED=$((CHANGED + 1))
done <"$CONF"

# Writes $want to sysfs $file whose current value is $old (unless already, or --dry-run),
# reads it back with $reader ("plain" or "selector"), records the undo.
write_sysfs() {
    local file="$1" want="$2" name="$3" old="$4" reader="$5" now
    if [[ "$old" == "$want" ]]; then
        say "  $name: $old (already)"
        return
    fi
    if [[ $DRY -eq 1 ]]; then
        say "  $name: $old -> $want (would set)"
        return
    fi
    if ! (echo "$want" >"$file") 2>/dev/null; then
        skip "$name" "$old kept, $file is not writable here"
        return
    fi
    if [[ "$reader" == selector ]]; then
        now="$(sed -n 's/.*\[\([^]]*\)\].*/\1/p' "$file")"
    else
        now="$(cat "$file" 2>/dev/null)"
    fi
    say "  $name: $old -> $now"
    add_undo "$name" "$old" echo "$(q "$old")" ">" "$(q "$file")"
    CHANGED=$((CHANGED + 1))
}

# A sysfs file holding one value; $3 = human name.
set_sysfs() {
    local file="$1" want="$2" name="$3" old
    if [[ ! -e "$file" ]]; then
        skip "$name" "$file does not exist"
        return
    fi
    old="$(cat "$file" 2>/dev/null)" || { skip "$name" "cannot read $file"; return; }
    write_sysfs "$file" "$want" "$name" "$old" plain
}

# A sysfs selector such as "always [madvise] never"; writes the word, undoes to the word
# that was in brackets.
set_selector() {
    local file="$1" want="$2" name="$3" raw old
    if [[ ! -e "$file" ]]; then
        skip "$name" "$file does not exist (kernel without CONFIG_TRANSPARENT_HUGEPAGE?)"
        return
    fi
    raw="$(cat "$file" 2>/dev/null)" || { skip "$name" "cannot read $file"; return; }
    old="$(sed -n 's/.*\[\([^]]*\)\].*/\1/p' <<<"$raw")"
    if [[ " $raw " != *[\ \[]"$want"[\ \]]* ]]; then
        skip "$name" "'$want' not offered ($raw)"
        return
    fi
    write_sysfs "$file" "$want" "$name" "$old" selector
}

# ---------------------------------------------------------------- CPU frequency
say "CPU frequency:"
shopt -s nullglob
govs=(/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor)
if [[ ${#govs[@]} -eq 0 ]]; then
    skip "governor" "no cpufreq in /sys (VM or container without frequency scaling; the host decides)"
else
    for g in "${govs[@]}"; do
        cpu="${g#/sys/devices/system/cpu/}"; cpu="${cpu%%/*}"
        avail="$(cat "${g%/*}/scaling_available_governors" 2>/dev/null || echo)"
        if [[ " $avail " != *" performance "* ]]; then
            skip "$cpu governor" "'performance' not offered (${avail:-none listed})"
            continue
        fi
        set_sysfs "$g" performance "$cpu governor"
    done
fi
if [[ -e /sys/devices/system/cpu/intel_pstate/no_turbo ]]; then
    set_sysfs /sys/devices/system/cpu/intel_pstate/no_turbo 1 "turbo (intel_pstate no_turbo)"
elif [[ -e /sys/devices/system/cpu/cpufreq/boost ]]; then
    set_sysfs /sys/devices/system/cpu/cpufreq/boost 0 "turbo (cpufreq boost)"
else
    skip "turbo" "no intel_pstate/no_turbo or cpufreq/boost in /sys"
fi

# ---------------------------------------------------------------- SMT
say "SMT:"
smt=/sys/devices/system/cpu/smt/control
if [[ $SMT_OFF -eq 0 ]]; then
    say "  smt: left alone (pass --smt-off to switch it off; state: $(cat $smt 2>/dev/null || echo unknown))"
elif [[ ! -e $smt ]]; then
    skip "smt" "$smt does not exist"
else
    state="$(cat $smt)"
    case "$state" in
        on) set_sysfs $smt off "smt" ;;
        off|forceoff) say "  smt: $state (already)" ;;
        *) skip "smt" "control says '$state' (no SMT siblings to switch off, or not controllable)" ;;
    esac
fi

# ---------------------------------------------------------------- THP
say "Transparent huge pages:"
set_selector /sys/kernel/mm/transparent_hugepage/enabled madvise "thp enabled"
set_selector /sys/kernel/mm/transparent_hugepage/defrag madvise "thp defrag"

# ---------------------------------------------------------------- report
say "Process limits of this shell (not changed; see README): nofile $(ulimit -Sn)/$(ulimit -Hn), memlock $(ulimit -Sl)/$(ulimit -Hl) KiB"
say "CPUs: $(nproc) usable, affinity $(taskset -pc $$ 2>/dev/null | sed 's/.*: //'); isolated: $(cat /sys/devices/system/cpu/isolated 2>/dev/null || echo '?')"
say "Pin the server and the load generator apart, e.g.:"
say "  taskset -c 1 ringwsgi --workers 1 APP & taskset -c 0 wrk -t1 -c64 ..."

if [[ $DRY -eq 1 ]]; then
    say "dry run: nothing changed, no undo script written ($SKIPPED skipped)"
    exit 0
fi
if [[ $CHANGED -eq 0 && ${#UNDO_LINES[@]} -eq 0 ]]; then
    say "0 changed, $SKIPPED skipped: nothing to undo, no undo script written"
    exit 0
fi
{
    echo "#!/usr/bin/env bash"
    echo "# Written by ringwsgi tuning/apply-benchmark.sh on $(date -Is) ($(hostname))."
    echo "# Restores the values it changed. Safe to run more than once."
    echo "set -u"
    for ((i = ${#UNDO_LINES[@]} - 1; i >= 0; i--)); do
        echo "${UNDO_LINES[$i]}"
    done
} >"$UNDO"
chmod +x "$UNDO"
say "$CHANGED changed, $SKIPPED skipped. Undo script: $UNDO"
