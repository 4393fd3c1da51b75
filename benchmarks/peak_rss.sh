# Sourced by benchmarks that measure peak memory: `peak_rss DIR CMD...` runs CMD under
# /usr/bin/time -v (its output discarded; DIR/time.log keeps time's report) and sets
# RSS_MB (peak resident set size, MB) and WALL_S (wall-clock seconds).
peak_rss() {
    local dir=$1; shift
    /usr/bin/time -v "$@" 2> "$dir/time.log" > /dev/null || { tail -5 "$dir/time.log"; exit 1; }
    local kb wall
    kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$dir/time.log")
    wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$dir/time.log")
    RSS_MB=$(( kb / 1024 ))
    WALL_S=$(awk -F: '{s=0; for (i=1; i<=NF; i++) s=s*60+$i; printf "%.1f", s}' <<< "$wall")
}
