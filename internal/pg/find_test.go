package pg_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/sessionguard/sessionguard/internal/pg"
	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/source"
	"github.com/sessionguard/sessionguard/internal/testenv"
)

// Indexed says exactly whether Find reads a probe's row without a
// sequential scan, and Fits whether its id can name a row at all.
func TestIndexedAndFitsMirrorFind(t *testing.T) {
	t.Parallel()
	var supabase *testenv.Source
	for _, s := range testenv.Sources() {
		if s.Name == source.Supabase {
			supabase = s
		}
	}
	w := supabase.NewWorld(t, "") // the id is the key, a uuid
	id := uuid.NewString()
	other := w.Table.KeyOf(uuid.NewString()).Hash
	for _, c := range []struct {
		name          string
		p             pg.Probe
		indexed, fits bool
	}{
		{"a positive entry", pg.Probe{Hash: w.Table.KeyOf(id).Hash, ID: id}, true, true},
		{"a negative entry", pg.Probe{Hash: other}, false, true},
		{"an id that is not its entry's key", pg.Probe{Hash: other, ID: id}, false, true},
		{"an id that is no uuid", pg.Probe{Hash: w.Table.KeyOf("x").Hash, ID: "x"}, true, false},
		{"an id that is no uuid, not its entry's key", pg.Probe{Hash: other, ID: "x"}, false, true},
	} {
		if got := w.Store.Indexed(c.p); got != c.indexed {
			t.Errorf("%s: Indexed %v, want %v", c.name, got, c.indexed)
		}
		if got := w.Store.Fits(c.p); got != c.fits {
			t.Errorf("%s: Fits %v, want %v", c.name, got, c.fits)
		}
	}

	k := testenv.NewStoreWorld(t, source.Kratos) // ByID, a uuid id
	var h session.Hash
	for _, c := range []struct {
		id   string
		fits bool
	}{{uuid.NewString(), true}, {"not-a-uuid", false}, {"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", false}, {"a\x00", false}} {
		p := pg.Probe{Hash: h, ID: c.id}
		if got := k.Store.Fits(p); got != c.fits || !k.Store.Indexed(p) {
			t.Errorf("kratos id %q: Fits %v, want %v", c.id, got, c.fits)
		}
		if !c.fits {
			continue
		}
		if f, err := k.Store.Find(context.Background(), []pg.Probe{p}); err != nil || f[0].Session != nil {
			t.Errorf("kratos id %q: %+v %v", c.id, f, err)
		}
	}
}
