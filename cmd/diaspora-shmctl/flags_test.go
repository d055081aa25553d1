package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestTypedValueTypesJSONScalarsOnly(t *testing.T) {
	cases := []struct {
		in   string
		want any
	}{
		{"42", json.Number("42")},
		{"-1.5e3", json.Number("-1.5e3")},
		{"true", true},
		{"false", false},
		{"null", nil},
		{"64MiB", "64MiB"},
		{"0600", "0600"}, // not JSON: a leading zero
		{"abc", "abc"},
		{"", ""},
		{" 1", " 1"}, // spaces are kept as written
		{`"quoted"`, `"quoted"`},
		{`["x"]`, `["x"]`},
		{"True", "True"},
		{"1.", "1."},
	}
	for _, c := range cases {
		if got := typedValue(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("typedValue(%q) = %#v, want %#v", c.in, got, c.want)
		}
	}
}

func TestExtractDynFlagsTakesDottedFlagsAndLeavesTheRest(t *testing.T) {
	args := []string{"topic", "create", "--name", "t", "--validator.y.z", "abc", "--topic.num_partitions=4",
		"--driver.root_path", "/r", "--validator", "schema", "--json", "--foo.bar", "x", "--topic.neg", "-1",
		"--", "--topic.after", "1"}
	rest, flags, err := extractDynFlags(args)
	if err != nil {
		t.Fatal(err)
	}
	wantRest := []string{"topic", "create", "--name", "t", "--validator", "schema", "--json", "--foo.bar", "x",
		"--", "--topic.after", "1"}
	if !reflect.DeepEqual(rest, wantRest) {
		t.Errorf("rest = %q, want %q", rest, wantRest)
	}
	var got []string
	for _, f := range flags {
		v, _ := json.Marshal(f.Value)
		got = append(got, f.Group+":"+strings.Join(f.Path, ".")+"="+string(v))
	}
	want := []string{`validator:y.z="abc"`, `topic:num_partitions=4`, `driver:root_path="/r"`, `topic:neg=-1`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("flags = %q, want %q", got, want)
	}
}

func TestExtractDynFlagsRejectsMissingValuesAndEmptyKeys(t *testing.T) {
	for _, args := range [][]string{
		{"--topic.ring_size"},
		{"--topic.ring_size", "--json"},
		{"--topic."},
		{"--topic..x", "1"},
		{"--validator.a.", "1"},
	} {
		if _, _, err := extractDynFlags(args); err == nil {
			t.Errorf("extractDynFlags(%q) succeeded, want an error", args)
		}
	}
	// An explicit empty value is a value.
	_, flags, err := extractDynFlags([]string{"--topic.x="})
	if err != nil || len(flags) != 1 || flags[0].Value != "" {
		t.Errorf("--topic.x= gave %v, %v; want one empty string", flags, err)
	}
}

func treeJSON(t *testing.T, args ...string) string {
	t.Helper()
	_, flags, err := extractDynFlags(args)
	if err != nil {
		t.Fatal(err)
	}
	m, err := flags.group("validator").tree()
	if err != nil {
		t.Fatal(err)
	}
	text, _ := json.Marshal(m)
	return string(text)
}

func TestTreeNestsDottedKeys(t *testing.T) {
	got := treeJSON(t, "--validator.y.z", "abc", "--validator.y.n", "3", "--validator.type", "schema", "--topic.q", "1")
	if want := `{"type":"schema","y":{"n":3,"z":"abc"}}`; got != want {
		t.Errorf("tree = %s, want %s", got, want)
	}
	if got, want := treeJSON(t, "--validator.a", "1", "--validator.a", "2"), `{"a":2}`; got != want {
		t.Errorf("repeated key: tree = %s, want %s (last wins)", got, want)
	}
}

func TestTreeRejectsAKeyThatIsBothValueAndObject(t *testing.T) {
	for _, args := range [][]string{
		{"--validator.a", "1", "--validator.a.b", "2"},
		{"--validator.a.b", "2", "--validator.a", "1"},
		{"--validator.a", "null", "--validator.a.b", "2"},
	} {
		_, flags, err := extractDynFlags(args)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := flags.tree(); err == nil {
			t.Errorf("tree of %q succeeded, want a conflict error", args)
		}
	}
}

func TestGroupConfigCommandLineOverridesFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "topic.json")
	os.WriteFile(file, []byte(`{"num_partitions": 2, "ring_size": "1MiB", "nested": {"a": 1, "b": {"c": 2}}, "scalar": 5}`), 0o600)
	_, flags, err := extractDynFlags([]string{"--topic.num_partitions", "8", "--topic.nested.b.d", "x", "--topic.scalar.k", "true"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := groupConfig(flags, "topic", file)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := json.Marshal(m)
	want := `{"nested":{"a":1,"b":{"c":2,"d":"x"}},"num_partitions":8,"ring_size":"1MiB","scalar":{"k":true}}`
	if string(text) != want {
		t.Errorf("config = %s, want %s", text, want)
	}
}

func TestParseConfigSaysWhereJSONIsBroken(t *testing.T) {
	for _, c := range []struct{ text, want string }{
		{"{\n  \"a\": 1,\n  \"b\": ]\n}", "line 3, column"},
		{`{"a": 1`, "unexpected end"},
		{``, "unexpected end"},
		{`[1, 2]`, "must hold a JSON object, not an array"},
		{`{"a":1} {"b":2}`, "extra text"},
	} {
		_, err := parseConfig([]byte(c.text), "cfg")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parseConfig(%q) error = %v, want one containing %q", c.text, err, c.want)
		}
	}
}

func TestPluginTypeFlagAndDottedTypeMustAgree(t *testing.T) {
	_, flags, _ := extractDynFlags([]string{"--validator.type", "default"})
	p := pluginFlags{group: "validator", typeName: "schema"}
	if _, _, err := p.config(flags); err == nil {
		t.Error("--validator schema with --validator.type default succeeded, want an error")
	}
	_, flags, _ = extractDynFlags([]string{"--validator.schema.type", "object"})
	md, given, err := p.config(flags)
	if err != nil || !given || md.Dump() != `{"schema":{"type":"object"},"type":"schema"}` {
		t.Errorf("config = %s, %v, %v", md.Dump(), given, err)
	}
	if _, given, _ := (pluginFlags{group: "serializer"}).config(flags); given {
		t.Error("serializer given with no serializer flag")
	}
}

func runCLI(args ...string) (stdout, stderr string, status int) {
	var out, errb bytes.Buffer
	status = run(args, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), status
}

func TestErrorsAreOneLineWithTheProgramName(t *testing.T) {
	dir := t.TempDir()
	shm := t.TempDir()
	for _, args := range [][]string{
		{"--root", dir, "--shm", shm, "topic", "create"},
		{"--root", dir, "--shm", shm, "--driver", "nope", "topic", "list"},
		{"--root", dir, "--shm", shm, "topic", "info", "missing"},
		{"--root", dir, "--shm", shm, "topic", "create", "--name", "x", "--topic.ring_size", "12parsecs"},
		{"--root", dir, "--shm", shm, "topic", "list", "--topic.x", "1"},
		{"--root", dir, "--shm", shm, "topic", "create", "--name", "x", "--topic.ring_size"},
		{"nosuchcommand"},
		{"topic", "nosuch"},
		{"--nosuchflag"},
	} {
		out, errText, status := runCLI(args...)
		if status == 0 {
			t.Errorf("%q: status 0, want non-zero (stdout %q)", args, out)
		}
		if !strings.HasPrefix(errText, progName+": ") || strings.Count(errText, "\n") != 1 {
			t.Errorf("%q: stderr = %q, want one line starting with %q", args, errText, progName+": ")
		}
	}
}

func TestHelpHasExamples(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"topic", "create", "--help"}, {"topic", "list", "--help"}, {"ring", "ls", "--help"},
		{"ring", "inspect", "--help"}, {"ring", "clean", "--help"}, {"produce", "--help"}, {"consume", "--help"},
		{"topic", "delete", "--help"}, {"topic", "info", "--help"}, {"topic", "complete", "--help"},
	} {
		out, errText, status := runCLI(args...)
		if status != 0 || errText != "" || !strings.Contains(out, "Examples:") {
			t.Errorf("%q: status %d, stderr %q, want help with examples, got %q", args, status, errText, out)
		}
	}
}
