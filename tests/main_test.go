// Package tests holds the end-to-end tests of diaspora-shm: real producer
// and consumer processes (this test binary re-executed with a role), crash
// and fault injection, and the invariants checked after each fault.
package tests

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	_ "github.com/diaspora-shm/diaspora/driver"
)

// faultRoleEnv names the role a re-executed test binary plays (see
// fault_child_test.go); unset, the binary runs the tests.
const faultRoleEnv = "DSHM_FAULT_ROLE"

// soak is DSHM_SOAK (a duration): how long the chaos test keeps running
// rounds; zero runs the short version.
var soak time.Duration

// baseSeed is DSHM_SEED, or the clock: every test derives its random choices
// from it and prints it, so a failure replays with DSHM_SEED=<seed>.
var baseSeed int64

func TestMain(m *testing.M) {
	if role := os.Getenv(faultRoleEnv); role != "" {
		os.Exit(runFaultChild(role))
	}
	if s := os.Getenv("DSHM_SOAK"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			fmt.Fprintf(os.Stderr, "DSHM_SOAK=%q is not a duration: %v\n", s, err)
			os.Exit(2)
		}
		soak = d
	}
	baseSeed = time.Now().UnixNano() % 1_000_000_007
	if s := os.Getenv("DSHM_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			fmt.Fprintf(os.Stderr, "DSHM_SEED=%q is not an integer: %v\n", s, err)
			os.Exit(2)
		}
		baseSeed = v
	}
	fmt.Printf("fault tests: DSHM_SEED=%d DSHM_SOAK=%v\n", baseSeed, soak)
	os.Exit(m.Run())
}
