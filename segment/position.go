package segment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Consumer positions live in dir/positions/<name>, one 16-byte file each
// (see FORMAT.md); updates are staged in dir/positions.tmp/.
const (
	positionsDir    = "positions"
	positionsTmpDir = "positions.tmp"
	maxConsumerName = 200

	posMagic   = "DSP1"
	posOffNext = 4  // uint64 next event ID
	posOffCRC  = 12 // CRC32C of bytes 0..11
	posLen     = 16
)

// storeMu serializes StorePosition within the process; across processes the
// unique temporary names keep concurrent updates from interleaving.
var storeMu sync.Mutex

// validConsumerName refuses names that could escape the positions directory
// or are not portable file names.
func validConsumerName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
	case len(name) > maxConsumerName:
	case strings.ContainsAny(name, "/\x00"):
	case strings.Contains(name, ".."):
	default:
		return nil
	}
	return fmt.Errorf("segment: invalid consumer name %q (non-empty, at most %d bytes, no '/', NUL or \"..\")", name, maxConsumerName)
}

func encodePosition(next uint64) []byte {
	b := make([]byte, posLen)
	copy(b, posMagic)
	binary.LittleEndian.PutUint64(b[posOffNext:], next)
	binary.LittleEndian.PutUint32(b[posOffCRC:], crc32.Checksum(b[:posOffCRC], castagnoli))
	return b
}

func decodePosition(b []byte) (uint64, error) {
	if len(b) != posLen || string(b[:len(posMagic)]) != posMagic {
		return 0, errors.New("bad position record length or magic")
	}
	if crc32.Checksum(b[:posOffCRC], castagnoli) != binary.LittleEndian.Uint32(b[posOffCRC:]) {
		return 0, errBadCRC
	}
	return binary.LittleEndian.Uint64(b[posOffNext:]), nil
}

// StorePosition durably records that consumer's next event to deliver is
// next. The update is atomic: a crash leaves the old or the new value.
func StorePosition(dir, consumer string, next uint64) error {
	return storePosition(dir, consumer, next, true)
}

// WritePosition records the position without fsync, in place: one 16-byte
// write at offset 0 of the existing file (a new one is created as by
// StorePosition). The kernel completes a write call whatever signal kills
// its process, so the crash of any process leaves the old or the new value;
// the crash of the operating system may lose it. A reader that races the
// write and sees a torn record fails its CRC and reads again.
func WritePosition(dir, consumer string, next uint64) error {
	if err := validConsumerName(consumer); err != nil {
		return err
	}
	path := filepath.Join(dir, positionsDir, consumer)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return storePosition(dir, consumer, next, false)
	}
	if err != nil {
		return fmt.Errorf("segment: write position %q in %s: %w", consumer, dir, err)
	}
	_, err = f.WriteAt(encodePosition(next), 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("segment: write position %q in %s: %w", consumer, dir, err)
	}
	return nil
}

func storePosition(dir, consumer string, next uint64, fsync bool) error {
	if err := validConsumerName(consumer); err != nil {
		return err
	}
	pdir := filepath.Join(dir, positionsDir)
	tdir := filepath.Join(dir, positionsTmpDir)
	dirMode, fileMode := modesOf(dir)
	for _, d := range []string{pdir, tdir} {
		if err := mkdirAs(d, dirMode); err != nil {
			return err
		}
	}
	storeMu.Lock()
	defer storeMu.Unlock()
	if err := writeFileReplace(tdir, filepath.Join(pdir, consumer), encodePosition(next), fileMode, fsync); err != nil {
		return fmt.Errorf("segment: store position %q in %s: %w", consumer, dir, err)
	}
	return nil
}

// LoadPosition returns consumer's stored next event ID; ok is false if none
// was stored. A damaged record is an error, never a value.
func LoadPosition(dir, consumer string) (next uint64, ok bool, err error) {
	if err := validConsumerName(consumer); err != nil {
		return 0, false, err
	}
	path := filepath.Join(dir, positionsDir, consumer)
	var v uint64
	for try := 0; ; try++ {
		var b []byte
		b, err = os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return 0, false, nil
		}
		if err != nil {
			return 0, false, err
		}
		if len(b) == 0 {
			return 0, false, nil // a position map being created
		}
		if len(b) == posMapLen {
			// A mapped position (OpenPositionMap): a slot torn by a
			// racing Store leaves the other one.
			v, ok, err := decodePositionMap(b)
			if err != nil {
				return 0, false, fmt.Errorf("segment: position file %s: %w", path, err)
			}
			return v, ok, nil
		}
		// A CRC failure may be a read racing WritePosition: read again
		// before calling it damage.
		if v, err = decodePosition(b); err == nil || !errors.Is(err, errBadCRC) || try == 2 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err != nil {
		return 0, false, fmt.Errorf("segment: position file %s: %w", path, err)
	}
	return v, true, nil
}

// Positions returns every stored consumer position of dir.
func Positions(dir string) (map[string]uint64, error) {
	pdir := filepath.Join(dir, positionsDir)
	ents, err := os.ReadDir(pdir)
	m := make(map[string]uint64, len(ents))
	if errors.Is(err, fs.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || validConsumerName(e.Name()) != nil {
			continue
		}
		v, ok, err := LoadPosition(dir, e.Name())
		if err != nil {
			return nil, err
		}
		if ok {
			m[e.Name()] = v
		}
	}
	return m, nil
}
