package main

import (
	"os"
	"testing"
)

// TestMain lets the test binary serve as the producer, consumer and
// stream-writer processes that pair mode starts.
func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role))
	}
	os.Exit(m.Run())
}

// TestPairQuickSmoke runs the quick pair mode with a few thousand events of
// 64 B and 64 KiB: every case must complete and its events arrive. It asserts
// nothing about speed.
func TestPairQuickSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	opt := PairOptions{
		Quick: true, Sizes: []int{64, 64 << 10}, Durability: []string{"none", "async"},
		Reps: 1, Scale: 1, Latency: true, AckEvery: 4096, RingSize: "4MiB",
		Out: t.TempDir(), Quiet: true, Events: 2000,
	}
	rep, err := runPair(opt)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Cases) == 0 {
		t.Fatal("no cases ran")
	}
	for _, c := range rep.Cases {
		if len(c.Errors) > 0 {
			t.Errorf("%s: %v", c.Name, c.Errors)
		}
		if len(c.Runs) != 1 || c.EventsSec <= 0 {
			t.Errorf("%s: no throughput figure (runs %v)", c.Name, c.Runs)
		}
		if c.Kind != "copy" && c.Kind != "disk" && (c.Latency == nil || c.Latency.Count != int64(opt.Events)) {
			t.Errorf("%s: latency samples %+v, want %d", c.Name, c.Latency, opt.Events)
		}
	}
	if err := writeJSON(opt.Out+"/bench.json", rep); err != nil {
		t.Fatal(err)
	}
	if err := writeChart(opt.Out+"/bench.png", rep); err != nil {
		t.Fatal(err)
	}
}
