#!/usr/bin/env bats
# strata run / exec / ps / logs / stop / kill / rm: real registry, the daemon started
# by `strata run` itself, the real containerd-shim-runc-v2, runc and CNI
# plugins. Every test removes its containers and stops the daemon it
# autostarted, even when it failed.

load helpers
bats_require_minimum_version 1.5.0

setup() {
	common_setup
	setup_run_env
}

teardown() {
	# records live in the state dir (stop_strata_root only knows ROOT)
	local id
	for id in $(strata ps -a -q 2>/dev/null); do strata rm -f "$id" >/dev/null 2>&1 || true; done
	stop_strata_root "$ROOT" "$SOCK"
	common_teardown
}

strata() { "$STRATA_BIN" --root "$ROOT" --address "$SOCK" --config "$TEST_TMP/config.toml" "$@"; }
# For `... &`: the background job is the CLI itself, so $! is its pid.
strata_exec() { exec "$STRATA_BIN" --root "$ROOT" --address "$SOCK" --config "$TEST_TMP/config.toml" "$@"; }

# Nothing of container id $1 left: record, log, netns, mounts, snapshot.
assert_no_leftovers() {
	local id=$1
	[ ! -e "$STATE/containers/$id" ]
	[ ! -e "$ROOT/containers/$id" ]
	[ ! -e "/run/netns/strata-${id:0:32}" ]
	! grep -q "$STATE/containers" /proc/self/mountinfo
	! grep -q "$ROOT/containers" /proc/self/mountinfo
	! grep -q "strata-${id:0:32}" /proc/self/mountinfo
	# the image has one layer: one snapshot directory, no container's
	[ "$(ls "$ROOT/snapshots" | wc -l)" = 1 ]
}

# Process $1 has exited (a zombie has: its reaper may be slow).
process_gone() { ! kill -0 "$1" 2>/dev/null || [ "$(ps -o stat= -p "$1" | cut -c1)" = Z ]; }
# No process has $1 in its command line.
no_process_matches() { ! pgrep -f "$1" >/dev/null; }

@test "run --rm starts the daemon, pulls, prints hello and leaves nothing behind" {
	[ ! -S "$SOCK" ]
	run strata run --rm --plain-http --net none "$IMAGE" echo hello
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$output" = "hello" ]
	# the daemon it started is detached from us and answers
	[ -S "$SOCK" ]
	pid=$(cat "$ROOT/strata.pid")
	kill -0 "$pid"
	[ "$(cat /proc/$pid/comm)" = strata ]
	# its own session, not ours
	[ "$(ps -o sid= -p "$pid" | tr -d ' ')" != "$(ps -o sid= -p $$ | tr -d ' ')" ]
	grep -q "strata serve ready" "$ROOT/strata.log"
	[ -z "$(ls "$STATE/containers")" ]
	assert_no_leftovers none
	run strata ps -a -q
	[ -z "$output" ]

	# a second run finds the daemon: same pid
	run strata run --rm --net none "$IMAGE" echo again
	[ "$status" -eq 0 ]
	[ "$output" = "again" ]
	[ "$(cat "$ROOT/strata.pid")" = "$pid" ]
}

@test "run passes the exit code through, 128+N for a signal" {
	run strata run --rm --plain-http --net none "$IMAGE" sh -c 'exit 7'
	[ "$status" -eq 7 ]
	run strata run --rm --net host "$IMAGE" false
	[ "$status" -eq 1 ]
	[ -z "$(ls "$STATE/containers")" ]
}

@test "-e, -w, -u and -v are visible inside" {
	mkdir -p "$TEST_TMP/vol" "$TEST_TMP/rovol"
	chmod 777 "$TEST_TMP/vol"
	echo from-host >"$TEST_TMP/vol/in"
	echo ro-data >"$TEST_TMP/rovol/f"
	printf 'FROM_FILE=yes\n# comment\n' >"$TEST_TMP/envfile"
	run strata run --rm --plain-http --net none -e FOO=bar --env-file "$TEST_TMP/envfile" \
		-w /tmp -u 65534:65534 -v "$TEST_TMP/vol:/data" -v "$TEST_TMP/rovol:/ro:ro" \
		"$IMAGE" sh -c 'echo "$FOO $FROM_FILE $(pwd) $(id -u):$(id -g)"; cat /data/in; echo written >/data/out; cat /ro/f; echo x 2>/dev/null >/ro/g || echo ro-refused'
	echo "$output"
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "bar yes /tmp 65534:65534" ]
	[ "${lines[1]}" = "from-host" ]
	[ "${lines[2]}" = "ro-data" ]
	[[ "$output" == *ro-refused* ]]
	[ "$(cat "$TEST_TMP/vol/out")" = written ]
	[ ! -e "$TEST_TMP/rovol/g" ]
	# --entrypoint and --hostname
	run strata run --rm --net none --hostname boxy --entrypoint /bin/echo "$IMAGE" hi
	[ "$output" = "hi" ]
	run strata run --rm --net none --hostname boxy "$IMAGE" cat /proc/sys/kernel/hostname /etc/hostname
	[ "$output" = "$(printf 'boxy\nboxy')" ]
}

@test "--net none has only lo; --net bridge gets 10.4.88.x and reaches the gateway" {
	run strata run --rm --plain-http --net none "$IMAGE" ls /sys/class/net
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$output" = "lo" ]

	run strata run --rm --net bridge "$IMAGE" sh -c \
		'ip -o -4 addr show eth0 | grep -o "10\.4\.88\.[0-9]*/24"; ping -c 1 -W 2 10.4.88.1 >/dev/null && echo ping-ok'
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "${lines[0]}" =~ ^10\.4\.88\.[0-9]+/24$ ]]
	[ "${lines[1]}" = ping-ok ]
	# the conflist went to our CNI dir; the address was released
	[ -f "$TEST_TMP/net.d/strata.conflist" ]
	ip=${lines[0]%/24}
	[ ! -e "/var/lib/cni/networks/strata/$ip" ]
	[ -z "$(ls "$STATE/containers")" ]
}

@test "-d, ps, logs, stop, rm; records survive a daemon restart" {
	run strata run -d --plain-http --net none --name web "$IMAGE" \
		sh -c 'echo started; trap "echo got-term; exit 3" TERM; while :; do sleep 0.1; done'
	echo "$output"
	[ "$status" -eq 0 ]
	id=$output
	[[ "$id" =~ ^[0-9a-f]{64}$ ]]
	wait_for 5 sh -c "grep -q started '$ROOT/containers/$id/container.log'"

	run strata ps
	echo "$output"
	[[ "${lines[0]}" =~ ^CONTAINER\ ID\ +IMAGE\ +COMMAND\ +CREATED\ +STATUS\ +NAMES$ ]]
	echo "$output" | grep -E "^${id:0:12} +$IMAGE +\"sh -c echo started…\" .* Up .* web$"
	run strata ps --json
	[ "$(echo "$output" | jq -r '.[0].id')" = "$id" ]
	[ "$(echo "$output" | jq -r '.[0].state')" = running ]

	run strata logs web
	[ "$output" = started ]

	# the name is taken
	run strata run -d --net none --name web "$IMAGE" true
	[ "$status" -eq 1 ]
	[[ "$output" == *'"web" is in use'* ]]

	# rm refuses a running container
	run strata rm web
	[ "$status" -eq 1 ]
	[[ "$output" == *"is running"* ]]

	# the daemon goes away and comes back: the container does not care
	kill -TERM "$(cat "$ROOT/strata.pid")"
	wait_for 5 sh -c "! kill -0 $(cat "$ROOT/strata.pid")"
	run strata ps -q
	[ "$output" = "${id:0:12}" ]

	run strata stop -t 5 web
	[ "$status" -eq 0 ]
	[ "$output" = web ]
	run strata ps
	[ "${#lines[@]}" -eq 1 ]
	run strata ps -a
	echo "$output"
	echo "$output" | grep -E "Exited \(3\) (Less than a second|[0-9]+ seconds?) ago +web$"
	run strata logs web
	[ "$output" = "$(printf 'started\ngot-term')" ]

	# rm restarts the daemon to remove the snapshot
	run strata rm web
	echo "$output"
	[ "$status" -eq 0 ]
	assert_no_leftovers "$id"
	run strata ps -a -q
	[ -z "$output" ]
}

@test "stop escalates to SIGKILL; kill sends a signal; logs -f ends with the container" {
	id=$(strata run -d --plain-http --net none "$IMAGE" sh -c 'trap "" TERM; echo up; while :; do sleep 0.1; done')
	wait_for 5 sh -c "grep -q up '$ROOT/containers/$id/container.log'"
	start=$(date +%s%N)
	run strata stop -t 1 "$id"
	[ "$status" -eq 0 ]
	elapsed=$((($(date +%s%N) - start) / 1000000))
	echo "stop took ${elapsed} ms"
	[ "$elapsed" -ge 900 ]
	[ "$(strata ps -a --json | jq -r '.[0].exit_code')" = 137 ]
	strata rm "$id"

	id=$(strata run -d --net none "$IMAGE" sh -c 'trap "echo usr1; exit 4" USR1; echo up; while :; do sleep 0.1; done')
	wait_for 5 sh -c "grep -q up '$ROOT/containers/$id/container.log'"
	strata logs -f "$id" >"$TEST_TMP/follow" 3>&- &
	follow=$!
	run strata kill -s USR1 "${id:0:12}"
	[ "$status" -eq 0 ]
	wait_for 5 sh -c "! kill -0 $follow"
	[ "$(cat "$TEST_TMP/follow")" = "$(printf 'up\nusr1')" ]
	run strata kill "$id"
	[ "$status" -eq 1 ]
	[[ "$output" == *"is not running"* ]]
	run strata rm "$id"
	[ "$status" -eq 0 ]
	assert_no_leftovers "$id"
}

@test "Ctrl-C is forwarded to an attached container; a second one kills it" {
	strata_exec run --rm --plain-http --net none "$IMAGE" \
		sh -c 'trap "echo got-int; exit 5" INT; echo ready; while :; do sleep 0.1; done' >"$TEST_TMP/out" 2>&1 3>&- &
	pid=$!
	wait_for 10 grep -q ready "$TEST_TMP/out"
	kill -INT "$pid"
	wait "$pid" || status=$?
	cat "$TEST_TMP/out"
	[ "${status:-0}" -eq 5 ]
	grep -q got-int "$TEST_TMP/out"

	strata_exec run --rm --net none "$IMAGE" \
		sh -c 'trap "" INT TERM; echo ready; while :; do sleep 0.1; done' >"$TEST_TMP/out2" 2>&1 3>&- &
	pid=$!
	wait_for 10 grep -q ready "$TEST_TMP/out2"
	kill -INT "$pid"
	sleep 0.3
	kill -INT "$pid"
	status=0
	wait "$pid" || status=$?
	[ "$status" -eq 137 ]
	[ -z "$(ls "$STATE/containers")" ]
}

@test "a container whose shim was killed shows as such and rm cleans it" {
	id=$(strata run -d --plain-http --net bridge "$IMAGE" sleep 60)
	shim=$(strata ps --json | jq -r '.[0].shim_pid')
	[ "$shim" -gt 0 ]
	# the container's process, by pid: other users of this host run sleeps too
	pid=$(strata ps --json | jq -r '.[0].pid')
	[ "$pid" -gt 0 ]
	ip=$(strata ps --json | jq -r '.[0].ip')
	[[ "$ip" =~ ^10\.4\.88\. ]]
	kill -9 "$shim"
	wait_for 5 sh -c "! kill -0 $shim"
	run strata ps -a
	echo "$output"
	echo "$output" | grep -q "shim dead"
	run strata rm "$id"
	echo "$output"
	[ "$status" -eq 0 ]
	assert_no_leftovers "$id"
	[ ! -e "/var/lib/cni/networks/strata/$ip" ]
	wait_for 5 process_gone "$pid"
}

@test "a run whose CLI was killed: ps still lists it, rm -f leaves nothing" {
	strata_exec run --plain-http --net none "$IMAGE" sh -c 'echo ready; exec sleep 61' >"$TEST_TMP/out" 2>&1 3>&- &
	pid=$!
	wait_for 10 grep -q ready "$TEST_TMP/out"
	kill -9 "$pid"
	wait "$pid" || true
	run strata ps --json
	echo "$output"
	[ "$(echo "$output" | jq -r '.[0].state')" = running ]
	id=$(echo "$output" | jq -r '.[0].id')
	pid=$(echo "$output" | jq -r '.[0].pid')
	[ "$pid" -gt 0 ]
	run strata rm -f "${id:0:12}"
	echo "$output"
	[ "$status" -eq 0 ]
	assert_no_leftovers "$id"
	wait_for 5 process_gone "$pid"
}

@test "[runtime] state_dir places the records; --net none has lo up" {
	printf '[runtime]\ncni_conf_dir = "%s"\nstate_dir = "%s"\n' "$TEST_TMP/net.d" "$TEST_TMP/state2" >"$TEST_TMP/config.toml"
	id=$(strata run -d --plain-http --net none "$IMAGE" sleep 60)
	[ -f "$TEST_TMP/state2/containers/$id/strata.json" ]
	[ ! -e "$STATE/containers/$id" ]
	run strata ps -q
	[ "$output" = "${id:0:12}" ]
	run strata rm -f "$id"
	[ "$status" -eq 0 ]
	[ ! -e "$TEST_TMP/state2/containers/$id" ]
	# runc brings lo up in the netns it makes (no CNI, no /run/netns entry)
	run strata run --rm --net none "$IMAGE" sh -c 'ip -o addr show lo | grep -c 127.0.0.1'
	[ "$output" = 1 ]
}

@test "missing runc or shim: the runtime's message, exit 1" {
	mkdir -p "$TEST_TMP/onlyshim"
	ln -s "$(command -v containerd-shim-runc-v2)" "$TEST_TMP/onlyshim/"
	PATH="$TEST_TMP/onlyshim" run strata run --rm --net none "$IMAGE" true
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"runc not found in PATH: install it with 'apt-get install runc'"* ]]
	PATH=/nonexistent run strata run --rm --net none "$IMAGE" true
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"containerd-shim-runc-v2 not found in PATH"* ]]
	[ ! -d "$STATE/containers" ] || [ -z "$(ls "$STATE/containers")" ]
}

@test "run of an image that does not exist: exit 1 naming the ref" {
	run strata run --rm --plain-http --net none "$REGISTRY/test/nothing:here" true
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"$REGISTRY/test/nothing:here"* ]]
	[ -z "$(ls "$STATE/containers" 2>/dev/null)" ]
}

@test "usage errors exit 2" {
	run strata run
	[ "$status" -eq 2 ]
	run strata run --net bogus "$IMAGE"
	[ "$status" -eq 2 ]
	run strata run -p 80 "$IMAGE"
	[ "$status" -eq 2 ]
	run strata run --rm -d "$IMAGE"
	[ "$status" -eq 2 ]
}

# The exec fifo directories of container $1 (none once every exec is done).
exec_dirs() { ls -A "$STATE/containers/$1/exec" 2>/dev/null || true; }
# An exec in container $1 leaves no exec directory behind, of its own or others.
exec_collected() { strata exec "$1" true && [ -z "$(exec_dirs "$1")" ]; }

@test "exec: the container's env, cwd and user, overrides, stdio, exit codes" {
	id=$(strata run -d --plain-http --net none --name box -e FOO=bar -w /tmp "$IMAGE" sleep 60)
	run strata exec "$id" sh -c 'echo "$FOO $(pwd) $(id -u):$(id -g) $(cat /proc/sys/kernel/hostname)"'
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$output" = "bar /tmp 0:0 ${id:0:12}" ]
	# by name; -e replaces by key and adds, -w, -u
	run strata exec -e FOO=baz -e NEW=1 -w / -u 65534:65534 box sh -c 'echo "$FOO $NEW $(pwd) $(id -u):$(id -g)"'
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$output" = "baz 1 / 65534:65534" ]
	# the same capabilities as a process `strata run` starts (the image has
	# no grep: filter here)
	exec_caps=$(strata exec box cat /proc/self/status | grep CapBnd)
	init_caps=$(strata run --rm --net none "$IMAGE" cat /proc/self/status | grep CapBnd)
	echo "exec: $exec_caps, run: $init_caps"
	[ -n "$exec_caps" ]
	[ "$exec_caps" = "$init_caps" ]
	# stdout and stderr apart; stdin with -i, EOF ends it
	run bash -c "'$STRATA_BIN' --root '$ROOT' --address '$SOCK' --config '$TEST_TMP/config.toml' exec box sh -c 'echo out; echo err >&2' 2>'$TEST_TMP/err'"
	[ "$output" = out ]
	[ "$(cat "$TEST_TMP/err")" = err ]
	run bash -c "printf 'one\ntwo\n' | '$STRATA_BIN' --root '$ROOT' --address '$SOCK' --config '$TEST_TMP/config.toml' exec -i box sh -c 'wc -l'"
	echo "$output"
	[ "$(echo "$output" | tr -d ' ')" = 2 ]
	# exit codes: as is, 128+N for a signal, 127 not found
	run strata exec box sh -c 'exit 9'
	[ "$status" -eq 9 ]
	run strata exec box sh -c 'kill -TERM $$; sleep 5'
	[ "$status" -eq 143 ]
	run -127 strata exec box /no/such/cmd
	echo "$output"
	[[ "$output" == *"/no/such/cmd"* ]]
	# nothing left of the execs
	[ -z "$(exec_dirs "$id")" ]
	# errors: unknown container, stopped container, usage
	run strata exec nosuch true
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"no such container: nosuch"* ]]
	strata stop -t 1 box
	run strata exec box true
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"is not running"* ]]
	run strata exec box
	[ "$status" -eq 2 ]
	run strata exec -w rel box true
	[ "$status" -eq 2 ]
	strata rm box
	assert_no_leftovers "$id"
}

@test "exec is cleaned up: after its CLI is killed, by rm -f, when the shim dies" {
	id=$(strata run -d --plain-http --net none "$IMAGE" sleep 60)
	# the CLI killed while its command runs: the next exec collects its
	# fifos once the command is gone
	strata_exec exec "$id" sh -c 'echo started; sleep 3' >"$TEST_TMP/exec0.out" 2>&1 3>&- &
	pid=$!
	wait_for 10 grep -q started "$TEST_TMP/exec0.out"
	kill -9 "$pid"
	wait "$pid" || true
	[ -n "$(exec_dirs "$id")" ]
	# while the command runs, its fifos stay
	run strata exec "$id" true
	[ "$status" -eq 0 ]
	[ -n "$(exec_dirs "$id")" ]
	wait_for 10 exec_collected "$id"

	# rm -f while an exec runs: the exec ends, nothing is left
	# the exec's shell carries a token of this test in its command line
	token="exec-$(basename "$TEST_TMP")"
	strata_exec exec "$id" sh -c "echo in-exec; sleep 30; : $token" >"$TEST_TMP/exec.out" 2>&1 3>&- &
	pid=$!
	wait_for 5 grep -q in-exec "$TEST_TMP/exec.out"
	run strata rm -f "$id"
	[ "$status" -eq 0 ]
	status=0
	wait "$pid" || status=$?
	cat "$TEST_TMP/exec.out"
	[ "$status" -ne 0 ]
	assert_no_leftovers "$id"
	wait_for 5 no_process_matches "$token"

	# the shim dies under a running exec: the CLI fails and removes its fifos
	id=$(strata run -d --net none "$IMAGE" sleep 60)
	shim=$(strata ps --json | jq -r '.[0].shim_pid')
	strata_exec exec "$id" sh -c "echo in-exec; sleep 31; : $token-2" >"$TEST_TMP/exec2.out" 2>&1 3>&- &
	pid=$!
	wait_for 5 grep -q in-exec "$TEST_TMP/exec2.out"
	kill -9 "$shim"
	status=0
	wait "$pid" || status=$?
	cat "$TEST_TMP/exec2.out"
	[ "$status" -ne 0 ]
	[ -z "$(exec_dirs "$id")" ]
	run strata exec "$id" true
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"is not running"* ]]
	run strata rm -f "$id"
	[ "$status" -eq 0 ]
	assert_no_leftovers "$id"
	wait_for 5 no_process_matches "$token-2"
}

# pty_run ROWS COLS [--resize ROWS2 COLS2 MARK] CMD...: CMD on a new pty of
# that size as its controlling terminal; prints what it wrote (without \r)
# and exits with its code. --resize: once MARK has been printed, the pty
# gets the new size (the kernel sends SIGWINCH) and, after a moment, a
# newline as input.
pty_run() {
	cat >"$TEST_TMP/pty.py" <<'PY'
import fcntl, os, select, struct, sys, termios, time
rows, cols, args = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
resize = None
if args[0] == "--resize":
    resize = (int(args[1]), int(args[2]), args[3].encode())
    args = args[4:]
master, slave = os.openpty()
fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
pid = os.fork()
if pid == 0:
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    os.close(master)
    os.execvp(args[0], args)
os.close(slave)
out, deadline = b"", time.time() + 60
while time.time() < deadline:
    r, _, _ = select.select([master], [], [], 0.5)
    if not r:
        if os.waitpid(pid, os.WNOHANG)[0]:
            pid = -pid
            break
        continue
    try:
        data = os.read(master, 65536)
    except OSError:
        break
    if not data:
        break
    out += data
    if resize and resize[2] in out:
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", resize[0], resize[1], 0, 0))
        time.sleep(0.5)
        os.write(master, b"\n")
        resize = None
sys.stdout.write(out.decode(errors="replace").replace("\r", ""))
_, st = os.waitpid(-pid if pid < 0 else pid, 0) if pid > 0 else (0, 0)
sys.exit(os.waitstatus_to_exitcode(st) if pid > 0 else 99)
PY
	python3 "$TEST_TMP/pty.py" "$@"
}

@test "-t: run and exec on a terminal see a pty of its size, and its resizes" {
	sb=("$STRATA_BIN" --root "$ROOT" --address "$SOCK" --config "$TEST_TMP/config.toml")
	# pulled first: the progress bars would go to the terminal
	strata run --rm --plain-http --net none "$IMAGE" true
	run pty_run 37 101 "${sb[@]}" run --rm -t --net none "$IMAGE" sh -c 'tty; stty size; echo out; exit 3'
	echo "$output"
	[ "$status" -eq 3 ]
	[[ "${lines[0]}" =~ ^/dev/pts/[0-9]+$ ]]
	[ "${lines[1]}" = "37 101" ]
	[ "${lines[2]}" = out ]
	# run -it follows a resize of the outer terminal
	run pty_run 37 101 --resize 50 120 ready "${sb[@]}" run --rm -it --net none "$IMAGE" sh -c 'stty size; echo ready; read x; stty size; exit 5'
	echo "$output"
	[ "$status" -eq 5 ]
	[[ "$output" == *"37 101"*ready*"50 120"* ]]

	id=$(strata run -d --net none "$IMAGE" sleep 60)
	run pty_run 24 80 "${sb[@]}" exec -t "$id" sh -c 'tty; stty size; echo out; exit 4'
	echo "$output"
	[ "$status" -eq 4 ]
	[[ "${lines[0]}" =~ ^/dev/pts/[0-9]+$ ]]
	[ "${lines[1]}" = "24 80" ]
	[ "${lines[2]}" = out ]
	run pty_run 24 80 --resize 40 132 ready "${sb[@]}" exec -it "$id" sh -c 'stty size; echo ready; read x; stty size; exit 6'
	echo "$output"
	[ "$status" -eq 6 ]
	[[ "$output" == *"24 80"*ready*"40 132"* ]]
	# without -t, no terminal inside
	run pty_run 24 80 "${sb[@]}" exec "$id" sh -c 'tty'
	[ "$status" -eq 1 ]
	[ -z "$(exec_dirs "$id")" ]
	strata rm -f "$id"
	assert_no_leftovers "$id"
}

# A TCP port nothing listens on now.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

@test "-p publishes a port through portmap, on loopback and the gateway; rm -f removes its rules" {
	port=$(free_port)
	id=$(strata run -d --plain-http --net bridge -p "$port:8080" "$IMAGE" \
		sh -c 'mkdir -p /www && echo hello-port >/www/index.html && exec httpd -f -p 8080 -h /www')
	iptables-save -t nat | grep -- "--dport $port"
	chain=$(iptables-save -t nat | grep -- "--dport $port" | grep -o 'CNI-DN-[0-9a-f]*' | head -1)
	[ -n "$chain" ]
	iptables-save -t nat | grep -F "$id"
	wait_for 10 curl -sf --max-time 2 "http://127.0.0.1:$port/"
	[ "$(curl -sf --max-time 5 "http://127.0.0.1:$port/")" = hello-port ]
	[ "$(curl -sf --max-time 5 "http://10.4.88.1:$port/")" = hello-port ]
	# straight to the container's address, too
	ip=$(strata ps --json | jq -r '.[0].ip')
	[ "$(curl -sf --max-time 5 "http://$ip:8080/")" = hello-port ]
	run strata rm -f "$id"
	[ "$status" -eq 0 ]
	! iptables-save -t nat | grep -- "--dport $port"
	! iptables-save | grep -F -e "$chain" -e "$id"
	! curl -sf --max-time 2 "http://127.0.0.1:$port/"
	assert_no_leftovers "$id"
}

@test "the same --name back to back: each run gets a working shim" {
	strata run --rm --plain-http --net none "$IMAGE" true
	for i in 1 2 3 4 5; do
		run strata run --rm --net none --name again "$IMAGE" echo "round $i"
		[ "$status" -eq 0 ]
		[ "$output" = "round $i" ]
	done
	for i in 1 2 3; do
		id=$(strata run -d --net none --name again "$IMAGE" sleep 60)
		# the shim answers some time later, not only to the CLI that started it
		sleep 0.2
		run strata exec again echo "exec $i"
		[ "$status" -eq 0 ]
		[ "$output" = "exec $i" ]
		[ "$(strata ps --json | jq -r '.[0].state')" = running ]
		strata rm -f again
		assert_no_leftovers "$id"
	done
}

@test "exec as docker: big stdin, -it needs a terminal, 126/127, unknown uid, two at once, signals, a background child" {
	sb=("$STRATA_BIN" --root "$ROOT" --address "$SOCK" --config "$TEST_TMP/config.toml")
	id=$(strata run -d --plain-http --net none --name box "$IMAGE" sleep 120)
	# -i: 3 MB of stdin arrive whole (the fifo takes 64 KiB at a time),
	# while cat's output is relayed back
	head -c 3000000 /dev/urandom >"$TEST_TMP/big"
	"${sb[@]}" exec -i box cat <"$TEST_TMP/big" >"$TEST_TMP/big.out"
	cmp "$TEST_TMP/big" "$TEST_TMP/big.out"
	"${sb[@]}" exec -i box sh -c 'cat >/tmp/big' <"$TEST_TMP/big"
	strata exec box cat /tmp/big | cmp - "$TEST_TMP/big"
	# a reader that stalls near the end (a pager) still gets all of it
	strata exec box cat /tmp/big | { head -c 2800000; sleep 3; cat; } | cmp - "$TEST_TMP/big"
	"${sb[@]}" run --rm -i --net none "$IMAGE" cat <"$TEST_TMP/big" | cmp - "$TEST_TMP/big"
	run bash -c "echo hi | ${sb[*]} exec -i box cat"
	[ "$status" -eq 0 ]
	[ "$output" = hi ]
	# a closed stdin reads as an empty one (no fifo takes its fd 0)
	run bash -c "exec <&-; timeout 20 ${sb[*]} exec -i box cat"
	[ "$status" -eq 0 ]
	[ -z "$output" ]

	# -it with stdin not a terminal: docker's error, nothing started
	run bash -c "echo hi | ${sb[*]} exec -it box cat"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"the input device is not a TTY"* ]]
	run bash -c "${sb[*]} run --rm -it --net none $IMAGE true </dev/null"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"the input device is not a TTY"* ]]
	[ "$(strata ps -a -q)" = "${id:0:12}" ]
	# -t alone does not need one
	run strata exec -t box echo tty-ok </dev/null
	[ "$status" -eq 0 ]
	[[ "$output" == tty-ok* ]]

	# docker's codes: 127 command not found (or a path through a file),
	# 126 cannot be run; a missing -w dir is not "not found"
	run -127 strata exec box nosuchcmd
	run -127 strata exec box /etc/motd/x
	run -126 strata exec box /etc
	run -126 strata exec -w /nosuchdir box true
	[[ "$output" == *nosuchdir* ]]
	run -127 strata run --rm --net none "$IMAGE" /no/such
	run -126 strata run --rm --net none "$IMAGE" /etc
	[ "$(strata ps -a -q)" = "${id:0:12}" ]

	# a uid, and uid:gid, that the container's /etc/passwd does not know
	run strata exec -u 4321 box sh -c 'echo $(id -u):$(id -g)'
	[ "$status" -eq 0 ]
	[ "$output" = 4321:0 ]
	run strata exec -u 4321:8765 box sh -c 'echo $(id -u):$(id -g)'
	[ "$output" = 4321:8765 ]
	run -1 strata exec -u nosuchuser box true
	[[ "$output" == *nosuchuser* ]]

	# two at once, each with its own output and code
	strata_exec exec box sh -c 'sleep 1; echo A; exit 3' >"$TEST_TMP/a" 2>&1 3>&- &
	pa=$!
	strata_exec exec box sh -c 'sleep 1; echo B; exit 4' >"$TEST_TMP/b" 2>&1 3>&- &
	pb=$!
	sa=0 sb_=0
	wait "$pa" || sa=$?
	wait "$pb" || sb_=$?
	[ "$sa" -eq 3 ]
	[ "$sb_" -eq 4 ]
	[ "$(cat "$TEST_TMP/a")" = A ]
	[ "$(cat "$TEST_TMP/b")" = B ]

	# SIGTERM to the CLI reaches the command
	strata_exec exec box sh -c 'trap "echo got-term; exit 5" TERM; echo ready; while :; do sleep 0.1; done' >"$TEST_TMP/t" 2>&1 3>&- &
	pt=$!
	wait_for 10 grep -q ready "$TEST_TMP/t"
	kill -TERM "$pt"
	st=0
	wait "$pt" || st=$?
	[ "$st" -eq 5 ]
	grep -q got-term "$TEST_TMP/t"

	# a background child keeps stdout open: as docker, the exec ends about
	# 2 s after its command, not when the child does
	t0=$(date +%s)
	run strata exec box sh -c 'sleep 30 & echo bg'
	t1=$(date +%s)
	[ "$status" -eq 0 ]
	[ "$output" = bg ]
	[ $((t1 - t0)) -lt 10 ]
	[ -z "$(exec_dirs "$id")" ]
	strata rm -f box
	assert_no_leftovers "$id"
}

@test "run -dt: the pty's output goes to the log; exec -t into it" {
	id=$(strata run -dt --plain-http --net none "$IMAGE" sh -c 'echo hello-tty; tty; sleep 60')
	wait_for 10 bash -c "'$STRATA_BIN' --root '$ROOT' --address '$SOCK' logs $id | grep -q pts"
	run strata logs "$id"
	echo "$output"
	[[ "${lines[0]}" == hello-tty* ]]
	[[ "${lines[1]}" =~ ^/dev/pts/[0-9]+ ]]
	[ "$(strata ps --json | jq -r '.[0].state')" = running ]
	run strata exec -t "$id" sh -c 'tty >/dev/null && echo has-tty'
	[ "$status" -eq 0 ]
	[[ "$output" == has-tty* ]]
	strata rm -f "$id"
	assert_no_leftovers "$id"
}
