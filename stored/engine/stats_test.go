package engine

import (
	"strconv"
	"strings"
	"testing"
)

func TestParseTickers(t *testing.T) {
	dump := "rocksdb.block.cache.miss COUNT : 12\nrocksdb.block.cache.hit COUNT : 30\n" +
		"rocksdb.db.get.micros P50 : 1.0 P95 : 2.0 P99 : 3.0 P100 : 4.0 COUNT : 5 SUM : 6\n" +
		"rocksdb.stall.micros COUNT : x\n"
	got := parseTickers(dump)
	if got["rocksdb.block.cache.hit"] != 30 || got["rocksdb.block.cache.miss"] != 12 {
		t.Errorf("parseTickers = %v; want hit 30, miss 12", got)
	}
	if _, ok := got["rocksdb.stall.micros"]; ok {
		t.Errorf("parseTickers kept a malformed count: %v", got)
	}
	if _, ok := got["rocksdb.db.get.micros P50 : 1.0 P95 : 2.0 P99 : 3.0 P100 : 4.0"]; ok {
		t.Errorf("histogram line parsed as a ticker")
	}
}

func FuzzParseTickers(f *testing.F) {
	f.Add("rocksdb.block.cache.hit COUNT : 30\n")
	f.Add("a COUNT : 18446744073709551615\nb COUNT : 18446744073709551616\n")
	f.Fuzz(func(t *testing.T, dump string) {
		for name, n := range parseTickers(dump) {
			// Every ticker comes from a line "name COUNT : n" of the dump.
			if !strings.Contains(dump, name+" COUNT : ") || !strings.Contains(dump, strconv.FormatUint(n, 10)) {
				t.Fatalf("ticker %q = %d not in dump %q", name, n, dump)
			}
		}
	})
}
