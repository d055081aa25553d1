#!/usr/bin/env bash
# End-to-end test of diaspora-shmctl across real processes.
#
#   bash tests/shmctl_test.sh path/to/diaspora-shmctl
#
# The topics go under $DSHM_TEST_ROOT (a fresh temporary directory when
# unset), the rings under a fresh directory in /dev/shm, removed at the end.
# Each check prints "ok - ..."; the first failure prints "not ok - ..." and
# exits 1.
set -euo pipefail

if [[ $# -ne 1 ]]; then
	echo "usage: $0 path/to/diaspora-shmctl" >&2
	exit 2
fi
BIN=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")

TMP=$(mktemp -d)
ROOT=${DSHM_TEST_ROOT:-$TMP/root}
SHM=$(mktemp -d /dev/shm/dshm-cli-XXXX)
BG_PIDS=()
cleanup() {
	for pid in "${BG_PIDS[@]}"; do
		kill -9 "$pid" 2>/dev/null || true
	done
	rm -rf "$SHM" "$TMP"
}
trap cleanup EXIT

ctl() { "$BIN" --root "$ROOT" --shm "$SHM" "$@"; }

ok() { echo "ok - $*"; }
fail() {
	echo "not ok - $*"
	for f in "$TMP"/out "$TMP"/err; do
		if [[ -s $f ]]; then
			echo "# $(basename "$f"):"
			sed 's/^/#   /' "$f" | head -n 20
		fi
	done
	exit 1
}
# check DESC CMD...: CMD must succeed.
check() {
	local desc=$1
	shift
	if "$@"; then ok "$desc"; else fail "$desc"; fi
}
ring_files() { find "$SHM" -maxdepth 1 -name 'dshm.*' ! -name '*.json' | wc -l; }

# expect_fail DESC WANT CMD...: CMD must exit non-zero with exactly one line
# on stderr, "diaspora-shmctl: ..." containing WANT, and no Go stack.
expect_fail() {
	local desc=$1 want=$2
	shift 2
	local rc=0
	"$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
	if [[ $rc -eq 0 ]]; then fail "$desc: exit status 0"; fi
	if grep -qE 'goroutine |panic' "$TMP/err"; then fail "$desc: a Go stack on stderr"; fi
	if [[ $(wc -l <"$TMP/err") -ne 1 ]]; then fail "$desc: stderr is not one line"; fi
	if ! grep -q '^diaspora-shmctl: ' "$TMP/err"; then fail "$desc: stderr does not start with the program name"; fi
	if ! grep -qF -- "$want" "$TMP/err"; then fail "$desc: stderr does not mention \"$want\""; fi
	ok "$desc (exit $rc: $(cat "$TMP/err"))"
}

# --- help -------------------------------------------------------------------
for cmd in "" "topic create" "topic list" "ring ls" "ring inspect" "ring clean" "produce" "consume"; do
	# shellcheck disable=SC2086
	"$BIN" $cmd --help >"$TMP/out" 2>"$TMP/err"
	grep -q 'Examples:' "$TMP/out" || fail "help of '$cmd' has examples"
done
ok "--help of every command shows examples"

# --- topic create with nested options, a config file and overrides -----------
cat >"$TMP/topic.json" <<'EOF'
{"ring_size": "4MiB", "durability": "async"}
EOF
ctl topic create --name events --topic-config "$TMP/topic.json" --topic.ring_size 1MiB \
	--validator schema --validator.schema.type object \
	--validator.schema.properties.i.type integer --validator.schema.properties.i.minimum 1 </dev/null
ok "topic create with --topic-config, --topic.* and nested --validator.*"

ctl topic list >"$TMP/out"
check "topic list names the topic" grep -qx 'events' "$TMP/out"
ctl topic list -v >"$TMP/out"
check "topic list -v shows the nested validator options" \
	grep -qF '"validator":{"schema":{"properties":{"i":{"minimum":1,"type":"integer"}},"type":"object"},"type":"schema"}' "$TMP/out"
check "topic list -v shows --topic.ring_size overriding the config file" grep -qF '"ring_size":1048576' "$TMP/out"
check "topic list -v shows the config file's durability" grep -qF '"durability":"async"' "$TMP/out"
ctl topic info events >"$TMP/out"
check "topic info shows the topic as JSON" grep -q '"num_partitions": 1' "$TMP/out"

# --- produce in one process, consume in another ------------------------------
seq 1000 | awk '{ printf "{\"i\":%d}\n", $1 }' | ctl produce events --format json >"$TMP/out" 2>"$TMP/err"
check "produce of 1000 lines is quiet when piped" test ! -s "$TMP/err"

ctl consume events --name reader --ack >"$TMP/consumed" 2>"$TMP/err"
check "consume --ack reads 1000 events" test "$(wc -l <"$TMP/consumed")" -eq 1000
check "the first event is id 0 with its metadata" \
	grep -qxF '{"id":0,"partition":0,"metadata":{"i":1},"data_size":0}' <(head -n 1 "$TMP/consumed")
check "the last event is id 999" grep -qF '"id":999,"partition":0,"metadata":{"i":1000}' <(tail -n 1 "$TMP/consumed")

ctl consume events --name reader --ack --timeout 500ms >"$TMP/out"
check "consuming again under the same name gets nothing new" test ! -s "$TMP/out"

printf 'x\n' >"$TMP/blob"
printf '{"i":1001}\n' | ctl produce events --format json --data-file "$TMP/blob" -v >"$TMP/out" 2>/dev/null
check "produce -v prints the event's ID and partition" grep -qxF '{"id":1000,"partition":0}' "$TMP/out"
ctl consume events --name reader --ack --data >"$TMP/out"
check "consume --data gives the data base64" \
	grep -qxF '{"id":1000,"partition":0,"metadata":{"i":1001},"data_size":2,"data":"eAo="}' "$TMP/out"
ctl consume events --name sizes >"$TMP/out"
check "consume without --data gives the real data_size, from the ring" \
	grep -qxF '{"id":1000,"partition":0,"metadata":{"i":1001},"data_size":2}' <(tail -n 1 "$TMP/out")

# --- a consumer killed with SIGKILL shows as dead ----------------------------
"$BIN" --root "$ROOT" --shm "$SHM" consume events --name follower --follow --from latest >/dev/null 2>&1 &
FOLLOWER=$!
BG_PIDS+=("$FOLLOWER")
for _ in $(seq 100); do
	ctl ring ls >"$TMP/out"
	if grep -qF "pid $FOLLOWER reader \"follower\" alive" "$TMP/out"; then break; fi
	sleep 0.1
done
check "ring ls shows the following consumer alive" grep -qF "pid $FOLLOWER reader \"follower\" alive" "$TMP/out"
{
	kill -9 "$FOLLOWER"
	wait "$FOLLOWER" || true
} 2>/dev/null
ctl ring ls >"$TMP/out"
check "ring ls reports the SIGKILLed consumer dead" grep -qF "pid $FOLLOWER reader \"follower\" dead" "$TMP/out"
check "ring ls shows topic, partition and size" grep -qE '^dshm\.[0-9a-f]+\.[0-9a-f]+\.0 +events +0 +1MiB ' "$TMP/out"
ctl ring inspect events/0 >"$TMP/out"
check "ring inspect shows the dead reader with its lag" grep -qE "^ +[0-9]+ +follower +$FOLLOWER +dead " "$TMP/out"
check "ring inspect shows the archiver" grep -q '^  archiver: ' "$TMP/out"

# --- ring clean --------------------------------------------------------------
before=$(ring_files)
check "there is a ring to clean" test "$before" -ge 1
ctl ring clean --dry-run >"$TMP/out"
check "ring clean --dry-run lists the ring" grep -q '^would remove dshm\..* (topic events partition 0)' "$TMP/out"
check "ring clean --dry-run removes nothing" test "$(ring_files)" -eq "$before"
ctl ring clean >"$TMP/out"
check "ring clean reports the removal" grep -q '^removed dshm\..* (topic events partition 0)' "$TMP/out"
check "ring clean removed the ring files" test "$(ring_files)" -eq 0
check "ring clean removed the sidecars" test "$(find "$SHM" -maxdepth 1 -name 'dshm.*.json' | wc -l)" -eq 0

ctl consume events --name fresh >"$TMP/out"
check "a new consumer reads all 1001 events from the log after clean" test "$(wc -l <"$TMP/out")" -eq 1001
check "the events read from the log are intact" cmp <(head -n 1000 "$TMP/out") "$TMP/consumed"
check "consume without --data gives the real data_size, from the log" \
	grep -qxF '{"id":1000,"partition":0,"metadata":{"i":1001},"data_size":2}' <(tail -n 1 "$TMP/out")

# --- ring clean keeps a ring when it cannot tell the root is gone -------------
# A topic of durability none: its ring holds the only copy of its events.
ctl topic create --name volatile --topic.durability none --topic.ring_size 64KiB </dev/null
seq 5 | ctl produce volatile
CFG=$ROOT/topics/volatile/topic.json
cp -p "$CFG" "$TMP/volatile.json"
VRING=$(ctl ring ls | awk '$2 == "volatile" { print $1 }')
check "the topic of durability none has a ring" test -n "$VRING" -a -e "$SHM/$VRING"
printf '{"name":"volatile", damaged' >"$CFG"
ctl ring ls >"$TMP/out"
check "ring ls marks the ring of an unreadable topic config root unknown" grep -qE '^dshm\.[^ ]+ +volatile \(root unknown\) ' "$TMP/out"
check "ring ls says why the root is unknown" grep -qE '^note: dshm\.[^ ]+: root unknown: .*topic\.json is damaged' "$TMP/out"
ctl ring ls --json >"$TMP/out"
check "ring ls --json gives the reason" grep -qF '"root_error": "shm driver: topic \"volatile\": ' "$TMP/out"
ctl ring clean --dry-run >"$TMP/out"
check "ring clean --dry-run keeps it and says why" grep -qE '^kept dshm\..* \(topic volatile partition 0\): cannot tell whether root .* still holds this topic' "$TMP/out"
ctl ring clean --force >"$TMP/out"
check "ring clean --force keeps it" grep -qE '^kept dshm\..* \(topic volatile partition 0\): cannot tell' "$TMP/out"
check "ring clean left the ring and its sidecar" test -e "$SHM/$VRING" -a -e "$SHM/$VRING.json"
cp -p "$TMP/volatile.json" "$CFG"
ctl consume volatile --name after-clean >"$TMP/out"
check "the 5 events of the kept ring are consumable after clean" \
	test "$(cut -d, -f3 "$TMP/out" | tr '\n' ' ')" = '"metadata":"1" "metadata":"2" "metadata":"3" "metadata":"4" "metadata":"5" '
# Proof that the root no longer holds the topic (ENOENT) still means gone.
mv "$ROOT/topics/volatile" "$TMP/volatile-dir"
ctl ring ls >"$TMP/out"
check "ring ls marks the ring of a vanished topic root gone" grep -qE '^dshm\.[^ ]+ +volatile \(root gone\) ' "$TMP/out"
ctl ring clean >"$TMP/out"
check "ring clean removes the ring of a vanished topic" grep -qE '^removed dshm\..* \(topic volatile partition 0\): root .* no longer holds' "$TMP/out"
mv "$TMP/volatile-dir" "$ROOT/topics/volatile"
ctl topic delete volatile

# --- a corrupt ring is an error for ring inspect -----------------------------
ctl topic create --name broken --topic.durability none --topic.ring_size 64KiB </dev/null
echo one | ctl produce broken
BRING=$(ctl ring ls | awk '$2 == "broken" { print $1 }')
check "the topic to corrupt has a ring" test -n "$BRING" -a -e "$SHM/$BRING"
printf 'garbage!garbage!' | dd of="$SHM/$BRING" conv=notrunc status=none
expect_fail "ring inspect of a corrupt ring" "$BRING" ctl ring inspect broken/0
expect_fail "ring inspect of a corrupt ring by its name" "$BRING" ctl ring inspect "$BRING"
expect_fail "ring inspect --json of a corrupt ring" "$BRING" ctl ring inspect broken --json
ctl ring ls >"$TMP/out"
check "ring ls lists the corrupt ring with its error, and exits 0" grep -qE "^$BRING +broken +0 +- .*error: " "$TMP/out"
ctl topic delete broken --force

# --- consume --ack into a pipe closed early ----------------------------------
# Events of about 1 KiB: the 256 of a batch of acknowledgements do not fit in
# a pipe, so the reader is gone before the first batch is written whole.
ctl topic create --name piped --topic.ring_size 4MiB </dev/null
awk 'BEGIN { s = sprintf("%1000s", ""); gsub(/ /, "x", s); for (i = 0; i < 2000; i++) print i s }' |
	ctl produce piped
ctl consume piped --name head --ack 2>"$TMP/err" | head -n 3 >"$TMP/out" && st=("${PIPESTATUS[@]}") || st=("${PIPESTATUS[@]}")
check "consume --ack | head -n 3 exits 0 (got ${st[0]})" test "${st[0]}" -eq 0
check "consume --ack | head -n 3 is silent on stderr" test ! -s "$TMP/err"
check "head got the first 3 events" test "$(cut -d, -f1 "$TMP/out" | tr '\n' ' ')" = '{"id":0 {"id":1 {"id":2 '
ctl consume piped --name head --ack >"$TMP/out"
first=$(head -n 1 "$TMP/out" | sed 's/^{"id":\([0-9]*\),.*/\1/')
check "the next consume starts after the third event (at $first)" test "$first" -ge 3 -a "$first" -lt 2000
check "the next consume gets every event after that, once" \
	test "$(cut -d, -f1 "$TMP/out" | sed 's/{"id"://' | tr '\n' ' ')" = "$(seq -s ' ' "$first" 1999) "
ctl ring ls | head -n 1 >"$TMP/out" 2>"$TMP/err" && st=("${PIPESTATUS[@]}") || st=("${PIPESTATUS[@]}")
check "ring ls | head -n 1 exits 0 and is silent (got ${st[0]})" test "${st[0]}" -eq 0 -a ! -s "$TMP/err"
if [[ -w /dev/full ]]; then
	to_full() { bash -c '"$0" "$@" >/dev/full' "$BIN" --root "$ROOT" --shm "$SHM" "$@"; }
	expect_fail "consume into a full disk" "write standard output" to_full consume piped --name full --ack -n 10
	ctl consume piped --name full -n 1 >"$TMP/out"
	check "what could not be written was not acknowledged" grep -q '^{"id":0,' "$TMP/out"
	expect_fail "topic list into a full disk" "write standard output" to_full topic list
fi
ctl topic delete piped

# --- library log records are one-line warnings --------------------------------
ctl topic create --name torn --topic.durability sync </dev/null
seq 3 | ctl produce torn
SEG=$(find "$ROOT/topics/torn" -type f -name '[0-9]*' -size +0 | sort | tail -n 1)
check "the sync topic has a log segment" test -n "$SEG"
printf 'torn write, not a frame' >>"$SEG"
echo 4 | ctl produce torn 2>"$TMP/err"
check "the archiver's log record reaches stderr" grep -q 'cut torn tail of log' "$TMP/err"
check "every log record is one line as the tool's warning" \
	bash -c "! grep -v '^diaspora-shmctl: warning: segment: cut torn tail of log .*bytes_cut=23' '$TMP/err'"
ctl consume torn --name check >"$TMP/out"
check "the topic goes on after the torn tail" test "$(wc -l <"$TMP/out")" -eq 4
ctl topic delete torn

# --- topic complete and delete -----------------------------------------------
ctl topic complete events
"$BIN" --root "$ROOT" --shm "$SHM" consume events --name after-complete --follow --from latest >"$TMP/out" &
pid=$!
BG_PIDS+=("$pid")
for _ in $(seq 50); do
	if ! kill -0 "$pid" 2>/dev/null; then break; fi
	sleep 0.1
done
check "consume --follow ends at the end of a complete topic" bash -c "! kill -0 $pid 2>/dev/null"
ctl topic delete events
ctl topic list >"$TMP/out"
check "topic delete removes the topic" test ! -s "$TMP/out"

# --- bad input -----------------------------------------------------------------
ctl topic create --name strict --validator schema --validator.schema.properties.i.type integer </dev/null
printf '{"i":1}\n{"i":"two"}\n' | expect_fail "produce of an event the validator rejects" "line 2" ctl produce strict --format json
printf '{"i":1}\nnot json\n' | expect_fail "produce of a line that is not JSON names the line" "line 2" ctl produce strict --format json
printf '{"i":3}\n{"i":4}\nnot json\n{"i":5}\n' | expect_fail "produce says what was stored before the bad line" \
	"line 3: metadata \"not json\": invalid JSON" ctl produce strict --format json
check "... and that it is the 2 events of the lines before it" grep -qF '; 2 events of the lines before it stored and flushed' "$TMP/err"
ctl consume strict --name check-stored >"$TMP/out"
check "the events before the bad line were stored, and none after it" \
	test "$(cut -d, -f3 "$TMP/out" | tr '\n' ' ')" = '"metadata":{"i":1} "metadata":{"i":1} "metadata":{"i":3} "metadata":{"i":4} '
ctl topic create --name spread --topic.num_partitions 3 </dev/null
seq 6 | ctl produce spread -v >"$TMP/out" 2>/dev/null
check "produce -v gives each event's partition" \
	test "$(tr '\n' ' ' <"$TMP/out")" = '{"id":0,"partition":0} {"id":0,"partition":1} {"id":0,"partition":2} {"id":1,"partition":0} {"id":1,"partition":1} {"id":1,"partition":2} '
ctl consume spread --name check >"$TMP/out"
check "... the partitions that consume sees" \
	test "$(sort "$TMP/out" | cut -d, -f1-3 | tr '\n' ' ')" = '{"id":0,"partition":0,"metadata":"1" {"id":0,"partition":1,"metadata":"2" {"id":0,"partition":2,"metadata":"3" {"id":1,"partition":0,"metadata":"4" {"id":1,"partition":1,"metadata":"5" {"id":1,"partition":2,"metadata":"6" '
ctl topic delete spread
ctl topic create --name text </dev/null
printf 'caf\xc3\xa9\nok\nbad \xff byte\nafter\n' | expect_fail "produce of a raw line that is not UTF-8 names the line" \
	"line 3: not valid UTF-8 (byte 5)" ctl produce text
ctl consume text --name check >"$TMP/out"
check "the lines before the one not UTF-8 are stored unchanged, none after" \
	test "$(cut -d, -f3 "$TMP/out" | tr '\n' ' ')" = '"metadata":"café" "metadata":"ok" '
ctl topic delete text
expect_fail "topic create without --name" "--name" ctl topic create </dev/null
expect_fail "an unknown driver" "nope" "$BIN" --root "$ROOT" --shm "$SHM" --driver nope topic list </dev/null
printf '{"ring_size": "1MiB",\n  "durability": }\n' >"$TMP/bad.json"
expect_fail "malformed JSON in a config file" "line 2" ctl topic create --name bad --topic-config "$TMP/bad.json" </dev/null
expect_fail "malformed JSON in a driver config file" "invalid JSON" \
	"$BIN" --driver-config "$TMP/bad.json" topic list </dev/null
expect_fail "an unknown topic" "nosuch" ctl consume nosuch --name a </dev/null
expect_fail "topic info of an unknown topic" "nosuch" ctl topic info nosuch </dev/null
expect_fail "a bad --topic.ring_size" "ring_size" ctl topic create --name bad --topic.ring_size 12parsecs </dev/null
expect_fail "a --topic.ring_size out of range" "ring_size" ctl topic create --name bad --topic.ring_size 1 </dev/null
expect_fail "a dynamic flag without a value" "needs a value" ctl topic create --name bad --topic.ring_size </dev/null
expect_fail "a dynamic flag the command does not take" "does not apply" ctl topic list --topic.ring_size 1MiB </dev/null
expect_fail "consume without --name" "--name" ctl consume strict </dev/null
expect_fail "an unknown command" "nosuch" ctl nosuch </dev/null
expect_fail "an unknown flag" "--bogus" ctl topic list --bogus </dev/null
ctl topic list >"$TMP/out"
check "no failed create left a topic behind" grep -qx 'strict' "$TMP/out"
check "only the valid topic exists" test "$(wc -l <"$TMP/out")" -eq 1

ctl ring clean >/dev/null
echo "# all checks passed"
