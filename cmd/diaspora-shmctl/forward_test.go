package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestForwardConfigErrorsNameLineAndKey(t *testing.T) {
	base := `[drivers.local]
type = "shm"
root_path = "/tmp/x"

[drivers.remote]
type = "kafka"
[drivers.remote.kafka]
"bootstrap.servers" = "127.0.0.1:1"
`
	for _, c := range []struct{ text, want string }{
		{base + "\n[[forward]]\nfrom = \"nowhere/a\"\nto = \"remote/a\"\n", `:11: [[forward]] 1: from = "nowhere/a": no [drivers.nowhere]`},
		{base + "\n[[forward]]\nfrom = \"local-a\"\nto = \"remote/a\"\n", `:11: [[forward]] 1: from = "local-a": want "driver/topic"`},
		{base + "\n[[forward]]\nfrom = \"local/a\"\nto = \"remote/a\"\n\n[[forward]]\nfrom = \"local/b\"\nto = \"remote/b\"\ncolour = \"red\"\n", `:17: [[forward]] 2: unknown key "colour"`},
		{base + "\n[[forward]]\nfrom = \"local/a\"\nto = \"remote/a\"\ndata_selector = \"lib.so:sel\"\n", `:13: [[forward]] 1: unknown key "data_selector": plug-in libraries are not supported`},
		{"[drivers.local]\ntype = \"files\"\n\n[[forward]]\nfrom = \"local/a\"\nto = \"local/b\"\n", `:2: drivers.local.type files: want "shm" or "kafka"`},
		{base + "\n[[forward]]\nfrom = \"local/a\"\nto = \"local/a\"\n", `from and to are both "local/a"`},
		{base, `no [[forward]] entry`},
		{base + "\n[[forward]]\nfrom = local/a\n", `forward.toml:11:`},
		{"[other]\nx = 1\n", `unknown key "other"`},
	} {
		_, err := parseForwardConfig("forward.toml", c.text)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config\n%s\ngave %v\nwant an error with %q", c.text, err, c.want)
		}
	}
	cfg, err := parseForwardConfig("forward.toml", base+"\n[[forward]]\nfrom = \"local/a\"\nto = \"remote/b\"\n")
	if err != nil || len(cfg.policies) != 1 || cfg.drivers["remote"].options["kafka"] == nil || cfg.drivers["local"].options["root_path"] != "/tmp/x" {
		t.Fatalf("a good config: %+v, %v", cfg, err)
	}
}

func TestForwardRefusesAMissingTopicAtStart(t *testing.T) {
	root, shm := t.TempDir(), t.TempDir()
	cfg := filepath.Join(t.TempDir(), "forward.toml")
	text := "[drivers.local]\ntype = \"shm\"\nroot_path = \"" + root + "\"\nshm_path = \"" + shm + "\"\n\n[[forward]]\nfrom = \"local/missing\"\nto = \"local/other\"\n"
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	status := run([]string{"forward", "--config", cfg}, strings.NewReader(""), &stdout, &stderr)
	if msg := stderr.String(); status == 0 || !strings.Contains(msg, "line 6") || !strings.Contains(msg, "missing") {
		t.Fatalf("forward of a missing topic: status %d, stderr %q; want an error naming line 6 and the topic", status, msg)
	}
}
