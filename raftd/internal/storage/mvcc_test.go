package storage

import (
	"bytes"
	"cmp"
	"slices"
	"testing"

	"github.com/pleiades-db/pleiades/shared/hlc"
)

// versionOrderKeys are user keys around the escape: 0x00 bytes, prefixes
// of one another, 0xff bytes.
var versionOrderKeys = [][]byte{
	{0x00}, {0x00, 0x00}, {0x00, 0x01}, {0x00, 0xff}, {0x01}, {0x01, 0x00}, []byte("a"), []byte("a\x00"),
	[]byte("a\x00\x00"), []byte("a\x00\x01"), []byte("a\x00\x02"), []byte("a\x00\xff"), []byte("a\x01"), []byte("a\xff"),
	[]byte("ab"), []byte("b"), {0xff}, {0xff, 0x00}, {0xff, 0xff},
}

var versionOrderTimestamps = []hlc.Timestamp{
	{}, {Logical: 1}, {WallTime: 1}, {WallTime: 1, Logical: 7}, {WallTime: 1 << 40}, {WallTime: 1<<63 - 1, Logical: 1<<31 - 1},
}

// TestVersionKeysSortByKeyThenNewestFirst checks the versions family
// order: by user key, then newest first; and that VersionSpan of a user
// span holds exactly the versions of its keys.
func TestVersionKeysSortByKeyThenNewestFirst(t *testing.T) {
	type kt struct {
		key []byte
		ts  hlc.Timestamp
	}
	var all []kt
	for _, k := range versionOrderKeys {
		for _, ts := range versionOrderTimestamps {
			all = append(all, kt{k, ts})
		}
	}
	want := slices.Clone(all)
	slices.SortFunc(want, func(a, b kt) int {
		if c := bytes.Compare(a.key, b.key); c != 0 {
			return c
		}
		return b.ts.Compare(a.ts)
	})
	got := slices.Clone(all)
	slices.SortFunc(got, func(a, b kt) int { return bytes.Compare(VersionKey(a.key, a.ts), VersionKey(b.key, b.ts)) })
	for i := range want {
		if !bytes.Equal(got[i].key, want[i].key) || got[i].ts != want[i].ts {
			t.Fatalf("position %d: encoded order has %q@%v, want %q@%v", i, got[i].key, got[i].ts, want[i].key, want[i].ts)
		}
	}
	for _, x := range all {
		k, ts, err := DecodeVersionKey(VersionKey(x.key, x.ts))
		if err != nil || !bytes.Equal(k, x.key) || ts != x.ts {
			t.Errorf("DecodeVersionKey(VersionKey(%q, %v)) = %q, %v, %v", x.key, x.ts, k, ts, err)
		}
		if vk := VersionKey(x.key, x.ts); bytes.Compare(vk, VersionPrefix(x.key)) < 0 || bytes.Compare(vk, VersionKeyEnd(x.key)) >= 0 {
			t.Errorf("VersionKey(%q, %v) is outside [VersionPrefix, VersionKeyEnd)", x.key, x.ts)
		}
	}
	spans := append([][]byte{nil}, versionOrderKeys...)
	for _, s := range spans {
		for _, e := range spans {
			if e != nil && bytes.Compare(s, e) >= 0 {
				continue
			}
			vs, ve := VersionSpan(s, e)
			for _, x := range all {
				in := bytes.Compare(x.key, s) >= 0 && (e == nil || bytes.Compare(x.key, e) < 0)
				vk := VersionKey(x.key, x.ts)
				vin := bytes.Compare(vk, vs) >= 0 && (ve == nil || bytes.Compare(vk, ve) < 0)
				if in != vin {
					t.Errorf("span [%q, %q): key %q@%v in the user span %v, in the version span %v", s, e, x.key, x.ts, in, vin)
				}
			}
		}
	}
}

func TestRecordRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		m     Meta
		value []byte
	}{
		{"first version", Meta{Mod: hlc.Timestamp{WallTime: 5}, Create: hlc.Timestamp{WallTime: 5}, Version: 1}, []byte("v")},
		{"empty value", Meta{Mod: hlc.Timestamp{WallTime: 9, Logical: 2}, Create: hlc.Timestamp{WallTime: 5}, Version: 300}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, v, deleted, err := DecodeRecord(EncodeRecord(tc.m, tc.value))
			if err != nil || deleted || m != tc.m || !bytes.Equal(v, tc.value) {
				t.Errorf("DecodeRecord(EncodeRecord(%+v, %q)) = %+v, %q, %v, %v", tc.m, tc.value, m, v, deleted, err)
			}
		})
	}
	ts := hlc.Timestamp{WallTime: 3, Logical: 4}
	if m, _, deleted, err := DecodeRecord(EncodeTombstone(ts)); err != nil || !deleted || m.Mod != ts {
		t.Errorf("tombstone decodes as %+v, %v, %v", m, deleted, err)
	}
	// Version 0 and a create timestamp after the write are refused.
	for _, bad := range [][]byte{
		EncodeRecord(Meta{Mod: ts, Create: ts, Version: 0}, nil),
		EncodeRecord(Meta{Mod: ts, Create: ts.Next(), Version: 1}, nil),
		append(EncodeTombstone(ts), 'x'),
		{recordV2},
	} {
		if _, _, _, err := DecodeRecord(bad); err == nil {
			t.Errorf("DecodeRecord(%x) accepted a bad record", bad)
		}
	}
}

func FuzzDecodeVersionKey(f *testing.F) {
	f.Add(VersionKey([]byte("a\x00b"), hlc.Timestamp{WallTime: 5, Logical: 1}))
	f.Add([]byte{0x00})
	f.Add([]byte{'a', 0x00, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		k, ts, err := DecodeVersionKey(b)
		if err != nil {
			return
		}
		if again := VersionKey(k, ts); !bytes.Equal(again, b) {
			t.Fatalf("re-encode %x != %x", again, b)
		}
	})
}

func FuzzVersionKeyOrder(f *testing.F) {
	f.Add([]byte("a"), []byte("a\x00"), int64(1), int64(2))
	f.Fuzz(func(t *testing.T, a, b []byte, wa, wb int64) {
		if wa < 0 || wb < 0 {
			return
		}
		ta, tb := hlc.Timestamp{WallTime: wa}, hlc.Timestamp{WallTime: wb}
		want := bytes.Compare(a, b)
		if want == 0 {
			want = tb.Compare(ta)
		}
		if got := bytes.Compare(VersionKey(a, ta), VersionKey(b, tb)); cmp.Compare(got, 0) != want {
			t.Fatalf("%q@%v vs %q@%v: encoded compare %d, want %d", a, ta, b, tb, got, want)
		}
	})
}

func FuzzDecodeRecord(f *testing.F) {
	ts := hlc.Timestamp{WallTime: 5, Logical: 1}
	f.Add(EncodeRecord(Meta{Mod: ts, Create: ts, Version: 1}, []byte("v")))
	f.Add(EncodeTombstone(ts))
	f.Add(EncodeValue(ts, []byte("v")))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, v, deleted, err := DecodeRecord(b)
		if err != nil {
			return
		}
		var again []byte
		switch {
		case deleted:
			again = EncodeTombstone(m.Mod)
		case b[0] == recordV1:
			again = EncodeValue(m.Mod, v)
		default:
			again = EncodeRecord(m, v)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encode %x != %x", again, b)
		}
	})
}
