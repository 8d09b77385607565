# Sourced by the bench scripts (not run): waits for a process started in the
# background to say where it listens.
#
#   address=$(wait_listening PID LOG PREFIX NAME) || exit 1
#
# Waits until the process PID has written a line "PREFIX ADDRESS" to LOG and
# prints ADDRESS. If the process ends first, says "NAME did not start:" with
# the log on standard error and fails.
wait_listening() {
  local pid=$1 log=$2 prefix=$3 name=$4
  until grep -q "^$prefix " "$log"; do
    kill -0 "$pid" 2>/dev/null || { echo "$name did not start:" >&2; cat "$log" >&2; return 1; }
    sleep 0.05
  done
  sed -n "s/^$prefix //p" "$log" | head -1
}
