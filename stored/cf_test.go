package stored_test

import (
	"strings"
	"testing"

	"github.com/pleiades-db/pleiades/shared/proto/storepb"
	"github.com/pleiades-db/pleiades/stored/engine"
)

// TestColumnFamiliesMatchTheWire keeps the engine's column families (which
// stored converts to and from the wire by value) equal to the storepb
// enum: the same numbers, the same names, none missing on either side.
// raftd and the clients use the storepb enum itself (storeclient.CF).
func TestColumnFamiliesMatchTheWire(t *testing.T) {
	wire := map[int32]string{}
	for v, name := range storepb.ColumnFamily_name {
		if v != int32(storepb.ColumnFamily_COLUMN_FAMILY_UNSPECIFIED) {
			wire[v] = strings.ToLower(strings.TrimPrefix(name, "COLUMN_FAMILY_"))
		}
	}
	cfs := engine.CFs()
	if len(cfs) != len(wire) {
		t.Errorf("engine has %d column families %v; the wire has %d %v", len(cfs), cfs, len(wire), wire)
	}
	for _, cf := range cfs {
		if name, ok := wire[int32(cf)]; !ok || name != cf.String() {
			t.Errorf("engine column family %d is %q; the wire's %d is %q", int32(cf), cf.String(), int32(cf), name)
		}
	}
}
