package examples_test

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The README's excerpts (Go, C, Python, Fortran) are marked <!-- excerpt:
// PATH -->: each of their lines, trimmed, must appear in that file in the
// same order (a "// ...", "# ..." or "! ..." line stands for lines left
// out), so the README shows code that compiles and runs: the Go programs
// in TestProducerAndConsumerPrograms, the C, Python and Fortran ones in the
// tests of capi/.
func TestReadmeExcerptsAreFromTheExamples(t *testing.T) {
	text, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)<!-- excerpt: (\\S+) -->\n```(?:go|c|python|fortran)\n(.*?)```").FindAllSubmatch(text, -1)
	if len(blocks) < 2 {
		t.Fatalf("README.md has %d marked excerpts, want the producer's and the consumer's", len(blocks))
	}
	for _, b := range blocks {
		path := string(b[1])
		src, err := os.ReadFile(filepath.Join("..", path))
		if err != nil {
			t.Fatalf("README excerpt of %s: %v", path, err)
		}
		var lines []string
		for sc := bufio.NewScanner(strings.NewReader(string(src))); sc.Scan(); {
			lines = append(lines, strings.TrimSpace(sc.Text()))
		}
		at := 0
		for sc := bufio.NewScanner(strings.NewReader(string(b[2]))); sc.Scan(); {
			want := strings.TrimSpace(sc.Text())
			if want == "" || strings.HasPrefix(want, "// ...") || strings.HasPrefix(want, "# ...") || strings.HasPrefix(want, "! ...") {
				continue
			}
			for at < len(lines) && lines[at] != want {
				at++
			}
			if at == len(lines) {
				t.Errorf("README excerpt of %s: line %q is not in the file (in this order)", path, want)
				break
			}
			at++
		}
	}
}
