package cdc

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/session"
)

// Crafted pgoutput messages: the real server cannot be made to send a
// malformed one, so these are built by hand.

var sessionsColumns = []string{"id", "user_id", "token_hash", "created_at", "updated_at", "expires_at", "revoked_at"}

func relationMsg(id uint32, name string, cols []string) []byte {
	b := []byte{'R'}
	b = binary.BigEndian.AppendUint32(b, id)
	b = append(b, "public\x00"...)
	b = append(b, name+"\x00"...)
	b = append(b, 'i')
	b = binary.BigEndian.AppendUint16(b, uint16(len(cols)))
	for _, c := range cols {
		b = append(b, 0)
		b = append(b, c+"\x00"...)
		b = binary.BigEndian.AppendUint32(b, 25)
		b = binary.BigEndian.AppendUint32(b, 0xffffffff)
	}
	return b
}

// tuple encodes values: nil is NULL, "\x00u" is unchanged TOAST.
func tuple(vals ...*string) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(vals)))
	for _, v := range vals {
		switch {
		case v == nil:
			b = append(b, 'n')
		case *v == "\x00u":
			b = append(b, 'u')
		default:
			b = append(b, 't')
			b = binary.BigEndian.AppendUint32(b, uint32(len(*v)))
			b = append(b, *v...)
		}
	}
	return b
}

func s(v string) *string { return &v }

func hexOf(h session.Hash) string { return `\x` + h.Hex() }

func row(h session.Hash, expires string, revoked *string) []byte {
	return tuple(s("0b7f3c4e-8a39-4f0e-9d5c-6f1e2a3b4c5d"), s("1c7f3c4e-8a39-4f0e-9d5c-6f1e2a3b4c5d"), s(hexOf(h)),
		s("2026-01-01 00:00:00+00"), s("2026-01-01 00:00:00+00"), s(expires), revoked)
}

func TestDecodeRowChanges(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	h1, h2 := session.HashToken("one"), session.HashToken("two")
	future, past := "2026-07-01 12:30:00.123456+00", "2026-05-01 00:00:00+00"
	upd := func(old []byte, oldKind byte, newRow []byte) []byte {
		b := []byte{'U', 0, 0, 0, 7}
		if old != nil {
			b = append(b, oldKind)
			b = append(b, old...)
		}
		return append(append(b, 'N'), newRow...)
	}
	key := func(h session.Hash) []byte { return tuple(nil, nil, s(hexOf(h)), nil, nil, nil, nil) }
	wantExp := time.Date(2026, 7, 1, 12, 30, 0, 123456000, time.UTC)
	cases := []struct {
		name string
		msg  []byte
		op   RowOp
		want []cache.Op
	}{
		{"insert drops a negative entry", append([]byte{'I', 0, 0, 0, 7, 'N'}, row(h1, future, nil)...), OpInsert, []cache.Op{cache.Drop(h1)}},
		{"delete drops the old key", append([]byte{'D', 0, 0, 0, 7, 'K'}, key(h1)...), OpDelete, []cache.Op{cache.Revoke(h1)}},
		{"revoke drops", upd(nil, 0, row(h1, future, s("2026-06-01 00:00:00+00"))), OpUpdate, []cache.Op{cache.Revoke(h1)}},
		{"expire drops", upd(nil, 0, row(h1, past, nil)), OpUpdate, []cache.Op{cache.Revoke(h1)}},
		{"token change drops both", upd(key(h1), 'K', row(h2, future, nil)), OpUpdate, []cache.Op{cache.Revoke(h1), cache.Drop(h2)}},
		{"full identity, same token: in place", upd(row(h1, past, nil), 'O', row(h1, future, nil)), OpUpdate, nil},
		{"other update: in place", upd(nil, 0, row(h1, future, nil)), OpUpdate, nil},
		{"unchanged toast is not null: drop rather than guess",
			upd(nil, 0, tuple(s("0b7f3c4e-8a39-4f0e-9d5c-6f1e2a3b4c5d"), s("x"), s(hexOf(h1)), s("\x00u"), nil, s(future), nil)),
			OpUpdate, []cache.Op{cache.Revoke(h1)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDecoder("sessions", func() time.Time { return now })
			if _, err := d.Decode(relationMsg(7, "sessions", sessionsColumns)); err != nil {
				t.Fatal(err)
			}
			ev, err := d.Decode(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			if ev.Kind != KindRow || ev.Op != tc.op {
				t.Fatalf("kind %v op %v", ev.Kind, ev.Op)
			}
			if tc.want == nil { // in-place update of h1 with the new expiry
				if len(ev.Ops) != 1 || ev.Ops[0].Hash != h1 || ev.Ops[0].Session == nil || !ev.Ops[0].HoldFills ||
					!ev.Ops[0].Session.ExpiresAt.Equal(wantExp) || ev.Ops[0].Session.RevokedAt != nil {
					t.Fatalf("want in-place update, got %+v", ev.Ops)
				}
				return
			}
			if len(ev.Ops) != len(tc.want) {
				t.Fatalf("ops %+v, want %+v", ev.Ops, tc.want)
			}
			for i := range tc.want {
				if ev.Ops[i].Hash != tc.want[i].Hash || ev.Ops[i].Session != nil || ev.Ops[i].HoldFills != tc.want[i].HoldFills {
					t.Fatalf("op %d = %+v, want drop of %x", i, ev.Ops[i], tc.want[i].Hash[:4])
				}
			}
		})
	}
}

func TestDecodeOtherTablesAndMessages(t *testing.T) {
	t.Parallel()
	d := NewDecoder("sessions", nil)
	if _, err := d.Decode(relationMsg(9, "audit", []string{"id"})); err != nil {
		t.Fatal(err)
	}
	ev, err := d.Decode(append([]byte{'I', 0, 0, 0, 9, 'N'}, tuple(s("1"))...))
	if err != nil || ev.Kind != KindIgnore {
		t.Fatalf("other table: %+v %v", ev, err)
	}
	hb := []byte{'M', 1, 0, 0, 0, 0, 0, 0, 0, 42}
	hb = append(hb, HeartbeatPrefix+"\x00"...)
	hb = binary.BigEndian.AppendUint32(hb, 13)
	hb = append(hb, "1700000000123"...)
	ev, err = d.Decode(hb)
	if err != nil || ev.Kind != KindHeartbeat || !ev.Heartbeat.Equal(time.UnixMilli(1700000000123)) || ev.LSN != 42 {
		t.Fatalf("heartbeat: %+v %v", ev, err)
	}
}

func TestDecodeMalformedNeverPanics(t *testing.T) {
	t.Parallel()
	h := session.HashToken("x")
	cases := map[string][]byte{
		"empty":                         {},
		"unknown type":                  {'Z', 1, 2},
		"truncated insert":              {'I', 0, 0, 0, 7, 'N', 0, 7, 't', 0, 0, 0, 200, 'a'},
		"change before relation":        append([]byte{'I', 0, 0, 0, 99, 'N'}, row(h, "2030-01-01 00:00:00+00", nil)...),
		"more columns than relation":    append([]byte{'I', 0, 0, 0, 7, 'N'}, tuple(s("a"), s("b"), s(hexOf(h)), s("c"), s("d"), s("e"), s("f"), s("g"))...),
		"short token hash":              append([]byte{'I', 0, 0, 0, 7, 'N'}, tuple(nil, nil, s(`\xabcd`), nil, nil, nil, nil)...),
		"token hash not hex":            append([]byte{'I', 0, 0, 0, 7, 'N'}, tuple(nil, nil, s(`\xzz`), nil, nil, nil, nil)...),
		"null token hash in delete":     append([]byte{'D', 0, 0, 0, 7, 'K'}, tuple(nil, nil, nil, nil, nil, nil, nil)...),
		"bad timestamp":                 append([]byte{'U', 0, 0, 0, 7, 'N'}, row(h, "tomorrow-ish", nil)...),
		"truncated relation":            relationMsg(8, "sessions", sessionsColumns)[:20],
		"truncate, huge relation count": {'T', 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 7},
		"heartbeat not a number":        append(append([]byte{'M', 1, 0, 0, 0, 0, 0, 0, 0, 1}, HeartbeatPrefix+"\x00"...), 0, 0, 0, 2, 'x', 'y'),
	}
	for name, msg := range cases {
		t.Run(name, func(t *testing.T) {
			d := NewDecoder("sessions", nil)
			if _, err := d.Decode(relationMsg(7, "sessions", sessionsColumns)); err != nil {
				t.Fatal(err)
			}
			_, err := d.Decode(msg)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("want ErrMalformed, got %v", err)
			}
			t.Log(err)
		})
	}
	// Random mutations of valid messages: errors are fine, panics are not.
	d := NewDecoder("sessions", nil)
	valid := [][]byte{relationMsg(7, "sessions", sessionsColumns),
		append([]byte{'I', 0, 0, 0, 7, 'N'}, row(h, "2030-01-01 00:00:00+00", nil)...)}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20000; i++ {
		m := append([]byte(nil), valid[i%2]...)
		m = m[:r.IntN(len(m)+1)]
		for j := 0; j < 3 && len(m) > 0; j++ {
			m[r.IntN(len(m))] = byte(r.Uint32())
		}
		_, _ = d.Decode(m) // must not panic
	}
}
