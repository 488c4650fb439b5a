package cdc

import "testing"

func TestSnapshotVisibility(t *testing.T) {
	t.Parallel()
	const epoch = uint64(1) << 32
	cases := []struct {
		snap string
		xid  uint32
		want bool
	}{
		{"100:110:", 99, true},                 // completed before xmin
		{"100:110:", 105, true},                // between, not in progress
		{"100:110:105", 105, false},            // in progress
		{"100:110:", 110, false},               // not completed: at xmax
		{"100:110:", 111, false},               // committing, above xmax
		{"4294968024:4294968024:", 728, false}, // epoch 1, the newest transaction, not completed
		{"4294968024:4294968024:", 727, true},  // epoch 1, completed
		{"8589934590:8589934590:", 4294967294, false},
		{"8589934590:8589934590:", 2, false},                    // next epoch, not completed
		{"8589934590:8589934590:", 4294967293, true},            // epoch 1, completed
		{"4294967290:4294967300:4294967295", 4294967295, false}, // in progress, epoch 0 side of a wrap
		{"4294967290:4294967300:", 2, true},                     // epoch 1 side of the wrap, completed
	}
	for _, tc := range cases {
		s, err := parseSnapshot(tc.snap)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.visible(tc.xid); got != tc.want {
			t.Errorf("snapshot %s xid %d: visible = %v, want %v", tc.snap, tc.xid, got, tc.want)
		}
	}
	if got := fullXid(3*epoch+5, 4294967295); got != 3*epoch-1 {
		t.Errorf("fullXid across an epoch = %d, want %d", got, 3*epoch-1)
	}
	for _, bad := range []string{"", "1:2", "a:2:", "1:b:", "1:2:x"} {
		if _, err := parseSnapshot(bad); err == nil {
			t.Errorf("parseSnapshot(%q) accepted", bad)
		}
	}
}
