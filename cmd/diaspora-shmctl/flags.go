package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Dynamic flags follow the conventions of the C++ diaspora-ctl: any option of
// the driver, the topic or a plug-in is given as --<group>.<key> <value>,
// where a dotted key nests (--validator.schema.type object gives
// {"schema":{"type":"object"}}). pflag cannot declare such flags, so they are
// taken out of the arguments before cobra sees them.

// dynGroups are the prefixes of dynamic flags.
var dynGroups = []string{"driver", "topic", "validator", "serializer", "partition-selector"}

// dynFlag is one --<group>.<path> <value> of the command line.
type dynFlag struct {
	Group string   // "topic"
	Path  []string // ["schema", "type"]
	Value any      // typed: json.Number, bool, nil or string
	Arg   string   // the flag as written, for messages
}

// dynFlags are the dynamic flags of one command line, in order.
type dynFlags []dynFlag

// group returns the flags of one group.
func (d dynFlags) group(g string) dynFlags {
	var out dynFlags
	for _, f := range d {
		if f.Group == g {
			out = append(out, f)
		}
	}
	return out
}

func isDynGroup(g string) bool {
	for _, x := range dynGroups {
		if x == g {
			return true
		}
	}
	return false
}

// extractDynFlags takes the dynamic flags out of args and returns the rest
// for cobra. It stops at "--". A dynamic flag without "=" takes the next
// argument as its value unless that one starts with "--".
func extractDynFlags(args []string) (rest []string, flags dynFlags, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		if !strings.HasPrefix(a, "--") {
			rest = append(rest, a)
			continue
		}
		name, value, hasValue := strings.Cut(a[2:], "=")
		group, key, dotted := strings.Cut(name, ".")
		if !dotted || !isDynGroup(group) {
			rest = append(rest, a)
			continue
		}
		path := strings.Split(key, ".")
		for _, p := range path {
			if p == "" {
				return nil, nil, fmt.Errorf("flag --%s: empty key (use --%s.<key> <value>, keys separated by single dots)", name, group)
			}
		}
		if !hasValue {
			if i+1 >= len(args) || strings.HasPrefix(args[i+1], "--") {
				return nil, nil, fmt.Errorf("flag --%s needs a value", name)
			}
			i++
			value = args[i]
		}
		flags = append(flags, dynFlag{Group: group, Path: path, Value: typedValue(value), Arg: "--" + name})
	}
	return rest, flags, nil
}

// typedValue gives a value that reads as a JSON number, true, false or null
// its JSON type; anything else is a string, as written.
func typedValue(s string) any {
	t := strings.TrimSpace(s)
	if t == "" || t != s || !json.Valid([]byte(t)) {
		return s
	}
	switch {
	case t == "true":
		return true
	case t == "false":
		return false
	case t == "null":
		return nil
	case t[0] == '-' || (t[0] >= '0' && t[0] <= '9'):
		return json.Number(t)
	}
	return s // a JSON string, array or object stays the text it is
}

// tree builds the nested object of a group's flags. The same key given twice
// keeps the last value; a key that is both a value and an object is an error.
func (d dynFlags) tree() (map[string]any, error) {
	root := map[string]any{}
	for _, f := range d {
		m := root
		for i, p := range f.Path[:len(f.Path)-1] {
			switch next := m[p].(type) {
			case map[string]any:
				m = next
			case nil:
				if _, set := m[p]; set {
					return nil, fmt.Errorf("flag %s: %s.%s was already given a value", f.Arg, f.Group, strings.Join(f.Path[:i+1], "."))
				}
				n := map[string]any{}
				m[p] = n
				m = n
			default:
				return nil, fmt.Errorf("flag %s: %s.%s was already given a value", f.Arg, f.Group, strings.Join(f.Path[:i+1], "."))
			}
		}
		last := f.Path[len(f.Path)-1]
		if _, isObj := m[last].(map[string]any); isObj {
			return nil, fmt.Errorf("flag %s: %s.%s already holds keys below it", f.Arg, f.Group, strings.Join(f.Path, "."))
		}
		m[last] = f.Value
	}
	return root, nil
}

// merge lays over onto base: objects merge key by key, anything else in
// over replaces what base has. base is modified and returned.
func merge(base, over map[string]any) map[string]any {
	if base == nil {
		base = map[string]any{}
	}
	for k, v := range over {
		if vm, ok := v.(map[string]any); ok {
			if bm, ok := base[k].(map[string]any); ok {
				base[k] = merge(bm, vm)
				continue
			}
			base[k] = merge(nil, vm)
			continue
		}
		base[k] = v
	}
	return base
}

// loadConfigFile reads a JSON object from a file; what names it in errors.
func loadConfigFile(path, what string) (map[string]any, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return parseConfig(text, what+" "+path)
}

// parseConfig parses a JSON object, numbers kept exact; a syntax error says
// at which line and column.
func parseConfig(text []byte, what string) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	if err == nil {
		if _, err2 := dec.Token(); err2 == nil {
			err = fmt.Errorf("extra text after the JSON value")
		}
	}
	if err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line, col := lineCol(text, se.Offset)
			return nil, fmt.Errorf("%s: invalid JSON at line %d, column %d: %v", what, line, col, se)
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: invalid JSON: unexpected end of file", what)
		}
		return nil, fmt.Errorf("%s: invalid JSON: %v", what, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: must hold a JSON object, not %s", what, jsonKind(v))
	}
	return m, nil
}

func lineCol(text []byte, offset int64) (line, col int) {
	if offset > int64(len(text)) {
		offset = int64(len(text))
	}
	line, col = 1, 1
	for _, b := range text[:offset] {
		if b == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return line, col
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	}
	return "an object"
}

// groupConfig is the object of one group: the config file (if any), then the
// dynamic flags over it.
func groupConfig(flags dynFlags, group, file string) (map[string]any, error) {
	var base map[string]any
	if file != "" {
		var err error
		if base, err = loadConfigFile(file, "--"+group+"-config"); err != nil {
			return nil, err
		}
	}
	over, err := flags.group(group).tree()
	if err != nil {
		return nil, err
	}
	return merge(base, over), nil
}

// sortedKeys is for stable messages.
