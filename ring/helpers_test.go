package ring

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// Records used by the tests carry [seq u64][producer u32][crc u32] at the
// start of Data (when Data is at least 16 bytes), the crc covering meta and
// the rest of data. Meta and the rest are filled from the seq.

func fill(meta, data []byte, prod uint32, seq uint64) {
	for i := range meta {
		meta[i] = byte(seq + uint64(i)*7)
	}
	for i := 16; i < len(data); i++ {
		data[i] = byte(seq*3 + uint64(i))
	}
	binary.LittleEndian.PutUint64(data[0:], seq)
	binary.LittleEndian.PutUint32(data[8:], prod)
	binary.LittleEndian.PutUint32(data[12:], sum(meta, data))
}

func sum(meta, data []byte) uint32 {
	c := crc32.ChecksumIEEE(meta)
	c = crc32.Update(c, crc32.IEEETable, data[:12])
	return crc32.Update(c, crc32.IEEETable, data[16:])
}

// check verifies a record written by fill and returns its producer and seq.
func check(e Entry) (uint32, uint64, error) {
	if len(e.Data) < 16 {
		return 0, 0, fmt.Errorf("record %d at %d: data of %d bytes", e.ID, e.Pos, len(e.Data))
	}
	seq := binary.LittleEndian.Uint64(e.Data)
	prod := binary.LittleEndian.Uint32(e.Data[8:])
	if got, want := sum(e.Meta, e.Data), binary.LittleEndian.Uint32(e.Data[12:]); got != want {
		return 0, 0, fmt.Errorf("record %d at %d (producer %d seq %d): crc %08x, want %08x", e.ID, e.Pos, prod, seq, got, want)
	}
	return prod, seq, nil
}

// push claims, fills and commits one batch.
func push(r *Ring, c *Claim, sizes []RecordSize, prod uint32, seq uint64, timeout time.Duration) error {
	if err := r.Claim(c, sizes, timeout); err != nil {
		return err
	}
	for i := 0; i < c.Len(); i++ {
		fill(c.Meta(i), c.Data(i), prod, seq+uint64(i))
	}
	return c.Commit()
}

func newTestRing(t testing.TB, o Options) *Ring {
	t.Helper()
	if o.Capacity == 0 {
		o.Capacity = MinCapacity
	}
	r, err := Create(t.TempDir(), "r", o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// child is a helper process running this test binary in a role.
type child struct {
	cmd *exec.Cmd
	out *bufio.Reader
}

func startChild(t testing.TB, role string, args ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "RING_TEST_ROLE="+role)
	for i, a := range args {
		cmd.Env = append(cmd.Env, "RING_TEST_ARG"+strconv.Itoa(i)+"="+a)
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, out: bufio.NewReader(out)}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return c
}

// line reads one line the child printed.
func (c *child) line(t testing.TB) string {
	t.Helper()
	s, err := c.out.ReadString('\n')
	if err != nil && err != io.EOF {
		t.Fatalf("child output: %v", err)
	}
	if len(s) > 0 && s[len(s)-1] == '\n' {
		s = s[:len(s)-1]
	}
	return s
}

func (c *child) wait(t testing.TB) {
	t.Helper()
	io.Copy(io.Discard, c.out)
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("child %v: %v", c.cmd.Env[len(c.cmd.Env)-1], err)
	}
}

func arg(i int) string { return os.Getenv("RING_TEST_ARG" + strconv.Itoa(i)) }

func argInt(i int) int {
	n, err := strconv.Atoi(arg(i))
	if err != nil {
		die("arg %d: %v", i, err)
	}
	return n
}

func die(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "helper: "+f+"\n", a...)
	os.Exit(2)
}
