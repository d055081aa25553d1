package ring

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/diaspora-shm/diaspora/shm"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if role := os.Getenv("RING_TEST_ROLE"); role != "" {
		roles[role]()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

var roles = map[string]func(){
	"producer":   roleProducer,
	"reader":     roleReader,
	"holdreader": roleHoldReader,
	"claimhang":  roleClaimHang,
	"batchhang":  roleBatchHang,
	"benchread":  roleBenchRead,
	"benchsock":  roleBenchSock,
	"pong":       rolePong,
}

func openArg() *Ring {
	r, err := Open(arg(0), arg(1), shm.Trust{})
	if err != nil {
		die("open: %v", err)
	}
	return r
}

// roleProducer: args dir, name, producer index, count. Pushes count records
// in batches of 1..8 with random sizes.
func roleProducer() {
	r := openArg()
	prod, n := uint32(argInt(2)), uint64(argInt(3))
	rng := rand.New(rand.NewPCG(uint64(prod), 1))
	var c Claim
	sizes := make([]RecordSize, 0, 8)
	for seq := uint64(0); seq < n; {
		k := min(uint64(1+rng.IntN(8)), n-seq)
		sizes = sizes[:0]
		for range k {
			sizes = append(sizes, RecordSize{Meta: rng.IntN(64), Data: 16 + rng.IntN(1000)})
		}
		if err := push(r, &c, sizes, prod, seq, 60*time.Second); err != nil {
			die("producer %d push %d: %v", prod, seq, err)
		}
		seq += k
	}
}

// roleReader: args dir, name, producers, count each. Attaches, says
// "ready", reads until end of stream, checks every record arrived exactly
// once in producer order, prints "ok <total>".
func roleReader() {
	r := openArg()
	nprod, n := argInt(2), uint64(argInt(3))
	rd, err := r.Attach(fmt.Sprintf("reader-%d", os.Getpid()))
	if err != nil {
		die("attach: %v", err)
	}
	fmt.Println("ready")
	next := make([]uint64, nprod)
	total := 0
	for {
		e, err := rd.Next(60 * time.Second)
		if err == ErrEndOfStream {
			break
		}
		if err != nil {
			die("next: %v", err)
		}
		prod, seq, err := check(e)
		if err != nil {
			die("%v", err)
		}
		if int(prod) >= nprod || seq != next[prod] {
			die("producer %d: got seq %d, want %d", prod, seq, next[min(int(prod), nprod-1)])
		}
		next[prod]++
		total++
		if total%16 == 0 {
			rd.Release(e.End)
		}
	}
	for p, s := range next {
		if s != n {
			die("producer %d: got %d records, want %d", p, s, n)
		}
	}
	fmt.Println("ok", total)
}

// roleHoldReader attaches, says ready, and never reads.
func roleHoldReader() {
	r := openArg()
	if _, err := r.Attach("holder"); err != nil {
		die("attach: %v", err)
	}
	fmt.Println("ready")
	time.Sleep(time.Hour)
}

// roleBatchHang writes a batch of 20 records up to its commit, says
// ready, and never commits.
func roleBatchHang() {
	r := openArg()
	var b Batch
	for i := range 20 {
		buf := b.Begin()
		buf = append(buf, fmt.Appendf(nil, `{"hang":%d}`, i)...)
		buf = append(buf, make([]byte, 100+i)...)
		if err := b.End(buf, len(fmt.Sprintf(`{"hang":%d}`, i))); err != nil {
			die("batch: %v", err)
		}
	}
	batchCopied = func() {
		fmt.Println("ready")
		time.Sleep(time.Hour)
	}
	r.WriteBatch(&b, time.Second, nil)
	die("the batch was committed")
}

// roleClaimHang claims one record, says ready, and never commits.
func roleClaimHang() {
	r := openArg()
	var c Claim
	if err := r.Claim(&c, []RecordSize{{Meta: 8, Data: 100}}, time.Second); err != nil {
		die("claim: %v", err)
	}
	fill(c.Meta(0), c.Data(0), 9, 999)
	fmt.Println("ready")
	time.Sleep(time.Hour)
}
