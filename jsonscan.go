package diaspora

// scanJSON reports, in one pass and without allocating for nesting up to
// 64 deep, whether b is one valid JSON value (exactly what encoding/json's
// Valid accepts, up to MaxJSONDepth) and whether it is compact (no
// whitespace outside strings). Metadata read from shared memory goes
// through it for every event, where encoding/json's scanner cost several
// times more; FuzzScanJSON holds it to json.Valid.
func scanJSON(b []byte) (valid, compact bool) {
	var small [64]byte
	stack := small[:0] // '{' or '[' per open level
	compact = true
	n := len(b)
	i := skipSpace(b, 0, &compact)
	var ok bool
value:
	if i >= n {
		return false, false
	}
	switch c := b[i]; {
	case c == '{':
		if stack = append(stack, '{'); len(stack) > MaxJSONDepth {
			return false, false
		}
		i = skipSpace(b, i+1, &compact)
		if i < n && b[i] == '}' {
			stack = stack[:len(stack)-1]
			i++
			goto after
		}
		goto key
	case c == '[':
		if stack = append(stack, '['); len(stack) > MaxJSONDepth {
			return false, false
		}
		i = skipSpace(b, i+1, &compact)
		if i < n && b[i] == ']' {
			stack = stack[:len(stack)-1]
			i++
			goto after
		}
		goto value
	case c == '"':
		if i, ok = scanString(b, i); !ok {
			return false, false
		}
	case c == '-' || (c >= '0' && c <= '9'):
		if i, ok = scanNumber(b, i); !ok {
			return false, false
		}
	case c == 't':
		if i, ok = scanLiteral(b, i, "true"); !ok {
			return false, false
		}
	case c == 'f':
		if i, ok = scanLiteral(b, i, "false"); !ok {
			return false, false
		}
	case c == 'n':
		if i, ok = scanLiteral(b, i, "null"); !ok {
			return false, false
		}
	default:
		return false, false
	}
after:
	i = skipSpace(b, i, &compact)
	if len(stack) == 0 {
		return i == n, i == n && compact
	}
	if i >= n {
		return false, false
	}
	switch top, c := stack[len(stack)-1], b[i]; {
	case c == ',':
		i = skipSpace(b, i+1, &compact)
		if top == '{' {
			goto key
		}
		goto value
	case (top == '{' && c == '}') || (top == '[' && c == ']'):
		stack = stack[:len(stack)-1]
		i++
		goto after
	default:
		return false, false
	}
key:
	if i >= n || b[i] != '"' {
		return false, false
	}
	if i, ok = scanString(b, i); !ok {
		return false, false
	}
	i = skipSpace(b, i, &compact)
	if i >= n || b[i] != ':' {
		return false, false
	}
	i = skipSpace(b, i+1, &compact)
	goto value
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON whitespace, clearing *compact when it skips any.
func skipSpace(b []byte, i int, compact *bool) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			*compact = false
			i++
		default:
			return i
		}
	}
	return i
}

// scanString checks the string that starts at b[i] (a quote) and returns
// the index just past its closing quote.
func scanString(b []byte, i int) (int, bool) {
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1, true
		case c < 0x20:
			return 0, false
		case c == '\\':
			i++
			if i >= len(b) {
				return 0, false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) {
					return 0, false
				}
				for _, h := range b[i+1 : i+5] {
					if !isHex(h) {
						return 0, false
					}
				}
				i += 4
			default:
				return 0, false
			}
		}
	}
	return 0, false
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// scanNumber checks the number that starts at b[i] and returns the index
// just past it.
func scanNumber(b []byte, i int) (int, bool) {
	n := len(b)
	if b[i] == '-' {
		i++
	}
	switch {
	case i < n && b[i] == '0':
		i++
	case i < n && b[i] >= '1' && b[i] <= '9':
		for i++; i < n && b[i] >= '0' && b[i] <= '9'; i++ {
		}
	default:
		return 0, false
	}
	if i < n && b[i] == '.' {
		i++
		if i >= n || b[i] < '0' || b[i] > '9' {
			return 0, false
		}
		for i++; i < n && b[i] >= '0' && b[i] <= '9'; i++ {
		}
	}
	if i < n && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < n && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= n || b[i] < '0' || b[i] > '9' {
			return 0, false
		}
		for i++; i < n && b[i] >= '0' && b[i] <= '9'; i++ {
		}
	}
	return i, true
}

func scanLiteral(b []byte, i int, lit string) (int, bool) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, false
	}
	return i + len(lit), true
}
